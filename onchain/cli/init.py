"""`onchain init`: a config for a real chain from the deployments we know (addresses and start
blocks), asking only for the name of the environment variable that will hold the RPC URL (a URL
carries an API key: it never goes in the file)."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from onchain.cli.common import check_writable, err
from onchain.errors import InputError

if TYPE_CHECKING:
    from onchain.config import ChainConfig, Config

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def init_cmd(
    chain: Annotated[
        str, typer.Option("--chain", help="the chain to watch (ethereum, arbitrum, base)")
    ] = "ethereum",
    rpc_env: Annotated[
        str | None,
        typer.Option(
            "--rpc-env",
            help="name of the environment variable holding the RPC URL (asked when at a "
            "terminal; default: the known one, e.g. ONCHAIN_RPC_ETHEREUM)",
        ),
    ] = None,
    out_path: Annotated[Path, typer.Option("--out", help="the config file to write")] = Path(
        "onchain.toml"
    ),
    force: Annotated[bool, typer.Option("--force", help="replace an existing file")] = False,
) -> None:
    """Write a config for a real chain: its markets from the deployments we know (Aave V3,
    Morpho Blue: addresses and discovery start blocks), the RPC URL from an environment
    variable. The file written loads as every command's --config."""
    from onchain.config import load_config
    from onchain.deployments import KNOWN

    known = load_config(KNOWN)
    if chain not in known.chains:
        raise InputError(
            f"--chain {chain}: no known deployments (known: {', '.join(known.chains)})"
        )
    if out_path.exists() and not force:
        raise InputError(f"--out {out_path}: exists; pass --force to replace it")
    check_writable(out_path, "--out")
    default_env = known.chains[chain].rpc_url_env or f"ONCHAIN_RPC_{chain.upper()}"
    if rpc_env is None:
        rpc_env = _ask_env(default_env)
    if not ENV_NAME.match(rpc_env):
        raise InputError(f"--rpc-env {rpc_env!r}: not an environment variable name")
    text = config_text(known, known.chains[chain], rpc_env)
    partial = out_path.with_name(out_path.name + ".partial")
    try:
        partial.write_text(text)
        load_config(partial)  # what we write must load, or nothing is written
        partial.replace(out_path)
    finally:
        partial.unlink(missing_ok=True)
    markets = [m.name for m in known.markets.values() if m.chain == chain]
    err.print(f"wrote {out_path}: chain {chain}, markets {', '.join(markets)}", highlight=False)
    if not os.environ.get(rpc_env):
        err.print(f"next: export {rpc_env}=<your RPC URL>, then onchain scan --config {out_path}")


def _ask_env(default: str) -> str:
    """At a terminal: ask for the variable's name; else the known default."""
    if not sys.stdin.isatty():
        err.print(f"RPC URL from environment variable {default} (--rpc-env to choose)")
        return default
    answer: str = typer.prompt("Environment variable that will hold the RPC URL", default=default)
    return answer.strip()


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def config_text(known: Config, chain: ChainConfig, rpc_env: str) -> str:
    """The chain table and its known markets, as TOML."""
    lines = [
        f"# onchain config for {chain.name}, written by `onchain init` from the deployments",
        "# onchain knows. The RPC URL (it carries your API key) comes from the environment.",
        "",
        f"[chains.{chain.name}]",
        f"chain_id = {chain.chain_id}",
        f"rpc_url_env = {_toml(rpc_env)}",
        f"block_time_s = {_toml(chain.block_time_s)}",
    ]
    if chain.rpc_max_rps is not None:
        lines.append(f"rpc_max_rps = {_toml(chain.rpc_max_rps)}")
    for m in known.markets.values():
        if m.chain != chain.name:
            continue
        lines += [
            "",
            "[[markets]]",
            f"name = {_toml(m.name)}",
            f"protocol = {_toml(m.protocol)}",
            f"chain = {_toml(m.chain)}",
            f"address = {_toml(m.address)}",
            f"start_block = {m.start_block}",
        ]
        if m.version is not None:
            lines.append(f"version = {_toml(m.version)}")
        lines += [f"{k} = {_toml(v)}" for k, v in m.extra.items()]
    return "\n".join(lines) + "\n"
