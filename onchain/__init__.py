"""onchain: watch DeFi lending positions on-chain and flag the ones likely to be liquidated.

The Python API (documented in `onchain.app.library`) takes your own `web3.Web3` or provider:

    from web3 import Web3, HTTPProvider
    import onchain

    w3 = Web3(HTTPProvider("http://127.0.0.1:8545"))
    reading = onchain.read_market(w3, "0x...PoolAddressesProvider")
    verdicts = onchain.assess(w3, reading)

Importing `onchain` loads nothing heavy: each name is imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # what __getattr__ binds at run time
    from onchain.app.library import assess, connect, read_many, read_market
    from onchain.app.pipeline import MarketRead, Reading
    from onchain.model import AssetPosition, Position
    from onchain.protocols.base import MarketRef
    from onchain.risk.settings import RiskSettings
    from onchain.risk.verdict import Advice, RiskVerdict

_LAZY = {
    "read_market": "onchain.app.library",
    "read_many": "onchain.app.library",
    "assess": "onchain.app.library",
    "connect": "onchain.app.library",
    "Reading": "onchain.app.pipeline",
    "MarketRead": "onchain.app.pipeline",
    "MarketRef": "onchain.protocols.base",
    "Position": "onchain.model",
    "AssetPosition": "onchain.model",
    "RiskVerdict": "onchain.risk.verdict",
    "Advice": "onchain.risk.verdict",
    "RiskSettings": "onchain.risk.settings",
}

__all__ = [
    "Advice",
    "AssetPosition",
    "MarketRead",
    "MarketRef",
    "Position",
    "Reading",
    "RiskSettings",
    "RiskVerdict",
    "assess",
    "connect",
    "read_many",
    "read_market",
]


def __getattr__(name: str) -> Any:
    """The API's names, each imported on first use (so `import onchain` and `onchain --help`
    stay fast)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'onchain' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
