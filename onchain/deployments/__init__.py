"""The real deployments onchain knows (addresses and discovery start blocks), shipped with the
package so `onchain init` can write a config from them; `config/mainnet.toml` points here."""

from pathlib import Path

KNOWN = Path(__file__).with_name("mainnet.toml")
