"""One vocabulary for asset symbols: which are USD stablecoins and which underlying a wrapper or
liquid staking token follows. Scan, stress, targets and the daemon all read it from here (they
used to keep three lists that disagreed). Upper-case symbols; part of the model room."""

from __future__ import annotations

# USD stablecoins (and "USD" itself, the base currency of USD-priced markets)
STABLE_SYMBOLS: frozenset[str] = frozenset(
    {
        "USDC",
        "USDC.E",
        "USDBC",
        "USDT",
        "USDT0",
        "DAI",
        "SDAI",
        "USDS",
        "GHO",
        "LUSD",
        "FRAX",
        "PYUSD",
        "USDE",
        "CRVUSD",
        "RLUSD",
        "USD",
    }
)

# Book symbols -> the scenario asset whose move they follow.
SYMBOL_ALIASES: dict[str, str] = {
    "ETH": "ETH",
    "WETH": "ETH",
    "STETH": "ETH",
    "WSTETH": "ETH",
    "RETH": "ETH",
    "CBETH": "ETH",
    "WEETH": "ETH",
    "EZETH": "ETH",
    "OSETH": "ETH",
    "BTC": "BTC",
    "WBTC": "BTC",
    "CBBTC": "BTC",
    "TBTC": "BTC",
    "BTCB": "BTC",
    "LINK": "LINK",
    "USDC": "USDC/USD",
    "USDC.E": "USDC/USD",
    "DAI": "DAI/USD",
    "SDAI": "DAI/USD",
}

# Liquid staking tokens: on top of the ETH move they take the stETH/ETH discount.
LST_SYMBOLS: frozenset[str] = frozenset(
    {"STETH", "WSTETH", "RETH", "CBETH", "WEETH", "EZETH", "OSETH"}
)


def is_stable(symbol: str) -> bool:
    return symbol.upper() in STABLE_SYMBOLS


def underlying(symbol: str) -> str:
    """The asset a symbol's price follows for volatility: "STABLE" for USD stablecoins, ETH for
    WETH and LSTs, BTC for wrapped BTC; other symbols follow themselves."""
    upper = symbol.upper()
    if upper in STABLE_SYMBOLS:
        return "STABLE"
    return SYMBOL_ALIASES.get(upper, upper)
