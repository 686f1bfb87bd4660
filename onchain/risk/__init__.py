"""Pure risk functions over numpy arrays: no I/O, no protocol names (see DESIGN.md "Risk").

Modules, each named for what it computes (their docstrings document the model and conventions):

* ``book`` — the protocol-neutral Book (positions × assets matrices) and its builder from adapter
  positions;
* ``health`` — float health factors and the liquidatable mask (screening; exact verdicts stay
  with the adapters' integer math);
* ``distance`` — liquidation prices per asset, the uniform volatile drop that liquidates, and an
  exact integer flip finder for a protocol predicate;
* ``oracle_lag`` — the next oracle price (deviation threshold / heartbeat) and pending health;
* ``latency`` — the confirmation-latency horizon and its estimator from recent blocks;
* ``volatility`` — EWMA and GARCH(1,1)-t volatility, correlation, the fitted drawdown law;
* ``probability`` — first-passage probability of liquidation within a horizon (closed form,
  fat tails) and its Monte Carlo check;
* ``liquidity`` — pool liquidity, DEX price impact (constant product, Uniswap V3), cascades;
* ``liquidator`` — best liquidation call per position, close factor, bonus, gas, slippage,
  profit, ranking;
* ``stress`` — historical extreme moves, shock grids, liquidation curves, bad debt;
* ``tiers`` — LIQUIDATABLE / PENDING / CRITICAL / HIGH / WATCH / SAFE with reason codes;
* ``advice`` — safe HF now, repay and top-up amounts reaching a target probability;
* ``assess`` — all of the above in one call.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what __getattr__ binds at run time (the type checker cannot see it)
    from onchain.risk.assess import Assessment, assess
    from onchain.risk.book import Book, CloseFactorRule, book_from_positions, make_book

__all__ = ["Assessment", "Book", "CloseFactorRule", "assess", "book_from_positions", "make_book"]


_FROM_BOOK = ("Book", "CloseFactorRule", "book_from_positions", "make_book")


def __getattr__(name: str) -> Any:
    """`assess` pulls in scipy and `book` numpy: load them on first use, so what needs only the
    light modules (`settings`, `verdict`: a config load, the store) starts fast."""
    if name in _FROM_BOOK:
        book = importlib.import_module("onchain.risk.book")
        globals().update({n: getattr(book, n) for n in _FROM_BOOK})
        return globals()[name]
    if name in ("Assessment", "assess"):
        module = importlib.import_module("onchain.risk.assess")
        # the submodule shares the function's name: bind the functions over it
        globals().update(assess=module.assess, Assessment=module.Assessment)
        return globals()[name]
    raise AttributeError(name)
