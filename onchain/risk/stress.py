"""Stress: the book under historical extreme moves and under a shock grid.

The scenario table (:data:`HISTORICAL_MOVES`) is ``shared/data/stress_scenarios.csv`` put in code,
one row per (event, asset, source), with the source named per row. Three kinds:

* ``computed_from_hourly_ohlc`` (ETH, BTC): ``drop_Wh_pct`` is the largest order-safe
  peak-to-trough drop whose trough candle lies in the event window (peak = the open of the
  trough candle or the high of an earlier candle at most W hours back; trough = that candle's
  low); for W = 1 it is open -> low of one candle, a lower bound;
* ``computed_from_daily_close`` (LINK): UTC daily close-to-close, only a 24 h figure;
* ``reported``: figures quoted by web pages (stETH/ETH discount, USDC/DAI depeg lows, and
  other venues' ETH/BTC drops kept for reference; computed figures take precedence).

:func:`historical_scenarios` turns them into one :class:`Scenario` per event for a window
(1 h, 4 h or 24 h): asset -> fractional drop. Depegs (stETH/ETH, USDC/USD, DAI/USD) only have
multi-hour-to-day horizons, so they enter the 24 h window only. :func:`scenario_prices` maps a
scenario onto a book's assets by symbol (:data:`SYMBOL_ALIASES`: WETH and LSTs follow ETH, LSTs
also take the stETH/ETH discount; WBTC/cbBTC follow BTC); volatile assets the scenario does not
name take its largest volatile drop by default (conservative) or are held.

:func:`apply_shock` reports, at shocked prices: positions liquidatable, collateral seized and
debt repaid by one liquidation call each (close factor, bonus, per asset), bad debt (collateral
value below debt, per position and per debt asset pro rata) and collateral at risk.
:func:`liquidation_curve` does the aggregate numbers for a whole grid of uniform drops at once
(each position is liquidatable on a prefix or suffix of the sorted drops: one binary search per
position and cumulative sums).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from onchain.risk.book import Book, BoolArray, FloatArray
from onchain.risk.health import health_factor_from_values
from onchain.risk.liquidator import plan_liquidations
from onchain.risk.liquidity import grid_count_below
from onchain.symbols import LST_SYMBOLS as LST_SYMBOLS
from onchain.symbols import SYMBOL_ALIASES as SYMBOL_ALIASES


@dataclass(frozen=True)
class HistoricalMove:
    """One asset's worst moves during one named event (percentages, positive = drop)."""

    scenario: str  # the event key (its first date) this row belongs to
    event_date: str
    event: str
    asset: str
    drop_1h_pct: float | None
    drop_4h_pct: float | None
    drop_24h_pct: float | None
    close_to_close_24h_pct: float | None
    reported_drop_pct: float | None
    reported_horizon: str
    kind: str
    source: str
    detail: str


HISTORICAL_MOVES: tuple[HistoricalMove, ...] = (
    HistoricalMove(
        "2020-03-12",
        "2020-03-12",
        "Black Thursday (COVID crash, Maker zero-bid auctions)",
        "ETH",
        25.6,
        32.5,
        53.6,
        47.8,
        None,
        "",
        "computed_from_hourly_ohlc",
        "computed from Binance hourly ETHUSDT (binance_spot) (shared/data/prices/eth_usdt_1h.csv)",
        "2020-03-12 03:00->2020-03-13 02:00 185.52->86.00",
    ),
    HistoricalMove(
        "2020-03-12",
        "2020-03-12",
        "Black Thursday (COVID crash, Maker zero-bid auctions)",
        "BTC",
        24.5,
        34.8,
        50.9,
        46.4,
        None,
        "",
        "computed_from_hourly_ohlc",
        "computed from Binance hourly BTCUSDT (binance_spot_cdd) (shared/data/prices/btc_usdt_1h.csv)",
        "2020-03-12 03:00->2020-03-13 02:00 7700.10->3782.13",
    ),
    HistoricalMove(
        "2021-05-19",
        "2021-05-19",
        "May-19 2021 crash (China mining/leverage flush)",
        "ETH",
        28.0,
        36.7,
        45.5,
        30.7,
        None,
        "",
        "computed_from_hourly_ohlc",
        "computed from Binance hourly ETHUSDT (binance_spot) (shared/data/prices/eth_usdt_1h.csv)",
        "2021-05-18 21:00->2021-05-19 13:00 3464.02->1888.00",
    ),
    HistoricalMove(
        "2021-05-19",
        "2021-05-19",
        "May-19 2021 crash (China mining/leverage flush)",
        "BTC",
        16.0,
        25.8,
        31.5,
        19.8,
        None,
        "",
        "computed_from_hourly_ohlc",
        "computed from Binance hourly BTCUSDT (binance_spot_cdd) (shared/data/prices/btc_usdt_1h.csv)",
        "2021-05-18 17:00->2021-05-19 13:00 43825.65->30000.00",
    ),
    HistoricalMove(
        "2021-12-04",
        "2021-12-04",
        "Dec-4 2021 weekend liquidation cascade",
        "ETH",
        12.8,
        16.3,
        24.7,
        16.2,
        None,
        "",
        "computed_from_hourly_ohlc",
        "computed from Binance hourly ETHUSDT (binance_spot) (shared/data/prices/eth_usdt_1h.csv)",
        "2021-12-03 13:00->2021-12-04 05:00 4654.88->3503.68",
    ),
    HistoricalMove(
        "2021-12-04",
        "2021-12-04",
        "Dec-4 2021 weekend liquidation cascade",
        "BTC",
        18.7,
        23.1,
        29.1,
        18.5,
        None,
        "",
        "computed_from_hourly_ohlc",
        "computed from Binance hourly BTCUSDT (binance_usdm_perp) (shared/data/prices/btc_usdt_1h.csv)",
        "2021-12-03 13:00->2021-12-04 05:00 57670.00->40888.89",
    ),
    HistoricalMove(
        "2022-05-09",
        "2022-05-09",
        "LUNA/UST collapse",
        "ETH",
        11.7,
        15.3,
        26.6,
        22.9,
        None,
        "",
        "computed_from_hourly_ohlc",
        "computed from Binance hourly ETHUSDT (binance_spot) (shared/data/prices/eth_usdt_1h.csv)",
        "2022-05-11 10:00->2022-05-12 05:00 2451.37->1800.00",
    ),
    HistoricalMove(
        "2022-05-09",
        "2022-05-09",
        "LUNA/UST collapse",
        "BTC",
        8.0,
        9.9,
        17.3,
        13.7,
        None,
        "",
        "computed_from_hourly_ohlc",
        "computed from Binance hourly BTCUSDT (binance_usdm_perp) (shared/data/prices/btc_usdt_1h.csv)",
        "2022-05-11 10:00->2022-05-12 07:00 32197.60->26631.00",
    ),
    HistoricalMove(
        "2022-06-13",
        "2022-06-13",
        "Celsius freeze / 3AC / stETH discount",
        "ETH",
        7.2,
        12.5,
        24.7,
        21.0,
        None,
        "",
        "computed_from_hourly_ohlc",
        "computed from Binance hourly ETHUSDT (binance_spot) (shared/data/prices/eth_usdt_1h.csv)",
        "2022-06-12 15:00->2022-06-13 14:00 1547.00->1165.45",
    ),
    HistoricalMove(
        "2022-06-13",
        "2022-06-13",
        "Celsius freeze / 3AC / stETH discount",
        "BTC",
        6.6,
        9.9,
        20.6,
        19.1,
        None,
        "",
        "computed_from_hourly_ohlc",
        "computed from Binance hourly BTCUSDT (binance_usdm_perp) (shared/data/prices/btc_usdt_1h.csv)",
        "2022-06-13 04:00->2022-06-14 02:00 26241.50->20823.00",
    ),
    HistoricalMove(
        "2022-11-08",
        "2022-11-08",
        "FTX collapse",
        "ETH",
        8.4,
        22.0,
        28.1,
        24.0,
        None,
        "",
        "computed_from_hourly_ohlc",
        "computed from Binance hourly ETHUSDT (binance_spot) (shared/data/prices/eth_usdt_1h.csv)",
        "2022-11-08 16:00->2022-11-09 10:00 1579.98->1136.13",
    ),
    HistoricalMove(
        "2022-11-08",
        "2022-11-08",
        "FTX collapse",
        "BTC",
        9.4,
        18.6,
        19.4,
        16.2,
        None,
        "",
        "computed_from_hourly_ohlc",
        "computed from Binance hourly BTCUSDT (binance_usdm_perp) (shared/data/prices/btc_usdt_1h.csv)",
        "2022-11-07 20:00->2022-11-08 19:00 20878.40->16830.00",
    ),
    HistoricalMove(
        "2023-03-10",
        "2023-03-10",
        "SVB / USDC depeg weekend",
        "ETH",
        5.4,
        8.0,
        11.5,
        10.0,
        None,
        "",
        "computed_from_hourly_ohlc",
        "computed from Binance hourly ETHUSDT (binance_spot) (shared/data/prices/eth_usdt_1h.csv)",
        "2023-03-09 14:00->2023-03-10 10:00 1546.45->1368.39",
    ),
    HistoricalMove(
        "2023-03-10",
        "2023-03-10",
        "SVB / USDC depeg weekend",
        "BTC",
        3.9,
        6.9,
        10.5,
        9.4,
        None,
        "",
        "computed_from_hourly_ohlc",
        "computed from Binance hourly BTCUSDT (binance_spot) (shared/data/prices/btc_usdt_1h.csv)",
        "2023-03-09 14:00->2023-03-10 10:00 21834.99->19549.09",
    ),
    HistoricalMove(
        "2024-08-05",
        "2024-08-05",
        "Yen carry-trade unwind",
        "ETH",
        16.5,
        23.3,
        28.1,
        23.8,
        None,
        "",
        "computed_from_hourly_ohlc",
        "computed from Binance hourly ETHUSDT (binance_spot) (shared/data/prices/eth_usdt_1h.csv)",
        "2024-08-04 02:00->2024-08-05 01:00 2935.46->2111.00",
    ),
    HistoricalMove(
        "2024-08-05",
        "2024-08-05",
        "Yen carry-trade unwind",
        "BTC",
        7.1,
        11.6,
        19.8,
        18.4,
        None,
        "",
        "computed_from_hourly_ohlc",
        "computed from Binance hourly BTCUSDT (binance_spot) (shared/data/prices/btc_usdt_1h.csv)",
        "2024-08-04 12:00->2024-08-05 06:00 61097.55->49000.00",
    ),
    HistoricalMove(
        "2025-02-03",
        "2025-02-03",
        "Tariff weekend crash",
        "ETH",
        15.0,
        26.1,
        32.3,
        21.0,
        None,
        "",
        "computed_from_hourly_ohlc",
        "computed from Binance hourly ETHUSDT (binance_spot) (shared/data/prices/eth_usdt_1h.csv)",
        "2025-02-02 06:00->2025-02-03 02:00 3139.00->2125.01",
    ),
    HistoricalMove(
        "2025-02-03",
        "2025-02-03",
        "Tariff weekend crash",
        "BTC",
        4.7,
        6.9,
        9.5,
        7.7,
        None,
        "",
        "computed_from_hourly_ohlc",
        "computed from Binance hourly BTCUSDT (binance_spot) (shared/data/prices/btc_usdt_1h.csv)",
        "2025-02-02 03:00->2025-02-03 02:00 100755.93->91231.00",
    ),
    HistoricalMove(
        "2025-10-10",
        "2025-10-10",
        "10-Oct-2025 tariff-headline liquidation cascade",
        "ETH",
        11.3,
        16.2,
        21.8,
        14.6,
        None,
        "",
        "computed_from_hourly_ohlc",
        "computed from Binance hourly ETHUSDT (binance_spot) (shared/data/prices/eth_usdt_1h.csv)",
        "2025-10-10 01:00->2025-10-10 21:00 4393.63->3435.00",
    ),
    HistoricalMove(
        "2025-10-10",
        "2025-10-10",
        "10-Oct-2025 tariff-headline liquidation cascade",
        "BTC",
        10.7,
        13.5,
        16.8,
        8.7,
        None,
        "",
        "computed_from_hourly_ohlc",
        "computed from Binance hourly BTCUSDT (binance_spot) (shared/data/prices/btc_usdt_1h.csv)",
        "2025-10-10 13:00->2025-10-10 21:00 122550.00->102000.00",
    ),
    HistoricalMove(
        "2020-03-12",
        "2020-03-12",
        "Black Thursday (COVID crash, Maker zero-bid auctions)",
        "LINK",
        None,
        None,
        None,
        45.9,
        None,
        "",
        "computed_from_daily_close",
        "computed from Yahoo daily LINK-USD closes, 1-day shift corrected (shared/data/prices/link_usd_1d_yahoo.csv)",
        "UTC daily close-to-close",
    ),
    HistoricalMove(
        "2021-05-19",
        "2021-05-19",
        "May-19 2021 crash (China mining/leverage flush)",
        "LINK",
        None,
        None,
        None,
        38.3,
        None,
        "",
        "computed_from_daily_close",
        "computed from Yahoo daily LINK-USD closes, 1-day shift corrected (shared/data/prices/link_usd_1d_yahoo.csv)",
        "UTC daily close-to-close",
    ),
    HistoricalMove(
        "2021-12-04",
        "2021-12-04",
        "Dec-4 2021 weekend liquidation cascade",
        "LINK",
        None,
        None,
        None,
        11.6,
        None,
        "",
        "computed_from_daily_close",
        "computed from Yahoo daily LINK-USD closes, 1-day shift corrected (shared/data/prices/link_usd_1d_yahoo.csv)",
        "UTC daily close-to-close",
    ),
    HistoricalMove(
        "2022-05-09",
        "2022-05-11",
        "LUNA/UST collapse",
        "LINK",
        None,
        None,
        None,
        19.4,
        None,
        "",
        "computed_from_daily_close",
        "computed from Yahoo daily LINK-USD closes, 1-day shift corrected (shared/data/prices/link_usd_1d_yahoo.csv)",
        "UTC daily close-to-close",
    ),
    HistoricalMove(
        "2022-06-13",
        "2022-06-13",
        "Celsius freeze / 3AC / stETH discount",
        "LINK",
        None,
        None,
        None,
        7.1,
        None,
        "",
        "computed_from_daily_close",
        "computed from Yahoo daily LINK-USD closes, 1-day shift corrected (shared/data/prices/link_usd_1d_yahoo.csv)",
        "UTC daily close-to-close",
    ),
    HistoricalMove(
        "2022-11-08",
        "2022-11-09",
        "FTX collapse",
        "LINK",
        None,
        None,
        None,
        19.0,
        None,
        "",
        "computed_from_daily_close",
        "computed from Yahoo daily LINK-USD closes, 1-day shift corrected (shared/data/prices/link_usd_1d_yahoo.csv)",
        "UTC daily close-to-close",
    ),
    HistoricalMove(
        "2024-08-05",
        "2024-08-05",
        "Yen carry-trade unwind",
        "LINK",
        None,
        None,
        None,
        12.6,
        None,
        "",
        "computed_from_daily_close",
        "computed from Yahoo daily LINK-USD closes, 1-day shift corrected (shared/data/prices/link_usd_1d_yahoo.csv)",
        "UTC daily close-to-close",
    ),
    HistoricalMove(
        "2022-06-13",
        "2022-06-13",
        "Celsius freeze / 3AC / stETH discount",
        "stETH/ETH",
        None,
        None,
        None,
        None,
        6.8,
        "5 days (13-18 Jun 2022)",
        "reported",
        "reported: bitcoinethereumnews.com/ethereum/steth-drops-to-0-93-eth-trustnodes ; tuta-space.notion.site/stETH-price-dynamics-45e01a0540b34b5e8e3517666bfbcebc",
        "ratio ~0.937 on 13 Jun; dips to ~0.932 bought 13-18 Jun",
    ),
    HistoricalMove(
        "2022-05-09",
        "2022-05-13",
        "LUNA/UST collapse: stETH discount",
        "stETH/ETH",
        None,
        None,
        None,
        None,
        4.7,
        "~2 days (12-13 May 2022)",
        "reported",
        "reported: cryptonews100.com/2022/05/13/lido-increases-liquidity-incentives-as-steth-trades-at-discount-to-eth/ ; goldberglawma.com mirror of the same Decrypt article",
        "Curve stETH pool discount 2% (12 May) then 4.7% (13 May)",
    ),
    HistoricalMove(
        "2023-03-10",
        "2023-03-11",
        "SVB / USDC depeg weekend",
        "USDC/USD",
        None,
        None,
        None,
        None,
        12.0,
        "<24h (10-11 Mar 2023)",
        "reported",
        "reported: theblock.co/post/218993 ; ktvz.com/money/cnn-business-consumer/2023/03/11/... ; trtworld.com/article/12799281",
        "low $0.88 shortly after 08:00 GMT 11 Mar (CoinGecko); $0.87 per AFP; USDC/USDT $0.94 on Kraken by 02:54 UTC",
    ),
    HistoricalMove(
        "2023-03-10",
        "2023-03-11",
        "SVB / USDC depeg weekend",
        "DAI/USD",
        None,
        None,
        None,
        None,
        12.0,
        "<24h (10-11 Mar 2023)",
        "reported",
        "reported: theblock.co/post/218993 ; trtworld.com/article/12799281",
        "low $0.88 (The Block) / $0.95 (AFP) - sources disagree",
    ),
    HistoricalMove(
        "2025-10-10",
        "2025-10-10",
        "10-Oct-2025 tariff-headline liquidation cascade",
        "ETH",
        None,
        None,
        None,
        None,
        17.8,
        "~3h",
        "reported",
        "reported: research.blockscope.co/the-october-crash",
        "$4,346 -> $3,574 (aggregate price, not Binance)",
    ),
    HistoricalMove(
        "2025-10-10",
        "2025-10-10",
        "10-Oct-2025 tariff-headline liquidation cascade",
        "BTC",
        None,
        None,
        None,
        None,
        16.9,
        "~3h",
        "reported",
        "reported: research.blockscope.co/the-october-crash",
        "$123,000 -> $102,000",
    ),
    HistoricalMove(
        "2024-08-05",
        "2024-08-05",
        "Yen carry-trade unwind",
        "BTC",
        None,
        None,
        None,
        None,
        15.1,
        "<5h",
        "reported",
        "reported: cointrolly.com/bitcoin-falls-under-53k-wiping-out-600m-in-leveraged-longs",
        "$58,350 -> $49,513",
    ),
    HistoricalMove(
        "2024-08-05",
        "2024-08-05",
        "Yen carry-trade unwind",
        "ETH",
        None,
        None,
        None,
        None,
        21.4,
        "intraday",
        "reported",
        "reported: cointrolly.com/bitcoin-falls-under-53k-wiping-out-600m-in-leveraged-longs",
        "$2,695 -> $2,118 (low $2,111 per mackhal.com/8593.html)",
    ),
    HistoricalMove(
        "2020-03-12",
        "2020-03-12",
        "Black Thursday (COVID crash, Maker zero-bid auctions)",
        "ETH",
        None,
        None,
        None,
        None,
        43,
        "1 day (close-to-close)",
        "reported",
        "reported: newsbtc.com/news/ethereum/ethereum-fell-43-percent-yesterday-worst-day-ever/",
        "ETH's worst day per Nic Carter / Coin Metrics",
    ),
)

# SYMBOL_ALIASES and LST_SYMBOLS: one vocabulary, in onchain.symbols
DEPEG_ASSETS: frozenset[str] = frozenset({"stETH/ETH", "USDC/USD", "DAI/USD"})


@dataclass(frozen=True)
class Scenario:
    """A named move: scenario asset -> fractional drop (0.25 = -25%) over ``window``."""

    name: str
    date: str
    window: str
    drops: Mapping[str, float]
    sources: tuple[str, ...]


def historical_scenarios(
    window: str = "24h", moves: Sequence[HistoricalMove] = HISTORICAL_MOVES
) -> tuple[Scenario, ...]:
    """One scenario per event for ``window`` in {"1h", "4h", "24h"} (see module doc)."""
    if window not in ("1h", "4h", "24h"):
        raise ValueError(f"window must be 1h, 4h or 24h, not {window!r}")
    by_event: dict[str, dict[str, float]] = {}
    names: dict[str, str] = {}
    sources: dict[str, list[str]] = {}
    for mv in moves:
        pct: float | None = None
        if mv.kind == "computed_from_hourly_ohlc":
            pct = getattr(mv, f"drop_{window}_pct")
        elif mv.kind == "computed_from_daily_close" and window == "24h":
            pct = mv.close_to_close_24h_pct
        elif mv.kind == "reported" and mv.asset in DEPEG_ASSETS and window == "24h":
            pct = mv.reported_drop_pct
        if pct is None:
            continue
        drops = by_event.setdefault(mv.scenario, {})
        if mv.asset not in drops:  # first (computed) figure wins over later ones
            drops[mv.asset] = round(pct / 100.0, 6)
            names.setdefault(mv.scenario, mv.event)
            sources.setdefault(mv.scenario, []).append(f"{mv.asset}: {mv.source}")
    return tuple(
        Scenario(names[key], key, window, drops, tuple(sources[key]))
        for key, drops in sorted(by_event.items())
    )


def scenario_prices(
    book: Book,
    drops: Mapping[str, float],
    *,
    aliases: Mapping[str, str] = SYMBOL_ALIASES,
    unmapped_volatile: str = "max",
) -> FloatArray:
    """(m,) shocked prices of the book's assets for a scenario's drops (matched by symbol).

    ``unmapped_volatile``: "max" gives volatile assets the scenario does not name its largest
    drop among ETH/BTC/LINK-like assets; "hold" leaves them. Stables not named are held.
    """
    if unmapped_volatile not in ("max", "hold"):
        raise ValueError("unmapped_volatile must be 'max' or 'hold'")
    vol_drops = [v for k, v in drops.items() if k not in DEPEG_ASSETS]
    worst = max(vol_drops) if vol_drops else 0.0
    symbols = book.symbols or book.assets
    factor = np.ones(book.n_assets)
    for j, sym in enumerate(symbols):
        key = sym.upper()
        target = aliases.get(key, sym)
        if target in drops:
            factor[j] = 1.0 - drops[target]
        elif not book.is_stable[j] and unmapped_volatile == "max":
            factor[j] = 1.0 - worst
        if key in LST_SYMBOLS and "stETH/ETH" in drops:
            factor[j] *= 1.0 - drops["stETH/ETH"]
    return book.price_base * factor


@dataclass(frozen=True)
class StressResult:
    """The book at shocked prices; ``*_by_asset`` are (m,), per-position arrays (n,)."""

    price_base: FloatArray
    liquidatable: BoolArray
    n_liquidatable: int
    collateral_at_risk_base: float  # collateral value of liquidatable positions
    debt_at_risk_base: float
    collateral_seized_base: float  # one liquidation call each (close factor, bonus)
    debt_repaid_base: float
    collateral_seized_units_by_asset: FloatArray
    debt_repaid_units_by_asset: FloatArray
    bad_debt_base: FloatArray  # (n,) max(0, debt value - collateral value)
    bad_debt_by_asset_base: (
        FloatArray  # (m,) each position's bad debt split pro rata over its debts
    )
    total_bad_debt_base: float


def apply_shock(book: Book, price_base: npt.ArrayLike) -> StressResult:
    """Everything a risk analyst asks at one set of shocked prices (see module doc)."""
    p = np.asarray(price_base, dtype=np.float64)
    w = book.collateral_lt @ p
    d = book.debt @ p
    c = book.collateral @ p
    hf = health_factor_from_values(w, d)
    liq = hf < 1.0
    plan = plan_liquidations(book, p, health=hf, eligible=liq)
    m = book.n_assets
    # weighted bincounts are float64 (numpy's stubs say int): asarray tells the type checker
    seized = np.asarray(
        np.bincount(
            plan.collateral_index[plan.eligible],
            plan.collateral_seized_units[plan.eligible],
            minlength=m,
        ),
        dtype=np.float64,
    )
    repaid = np.asarray(
        np.bincount(
            plan.debt_index[plan.eligible], plan.debt_repaid_units[plan.eligible], minlength=m
        ),
        dtype=np.float64,
    )
    bad = np.maximum(d - c, 0.0)
    debt_val = book.debt * p
    share = np.divide(debt_val, d[:, None], out=np.zeros_like(debt_val), where=d[:, None] > 0)
    bad_by_asset = bad @ share
    return StressResult(
        price_base=p,
        liquidatable=liq,
        n_liquidatable=int(liq.sum()),
        collateral_at_risk_base=float(c[liq].sum()),
        debt_at_risk_base=float(d[liq].sum()),
        collateral_seized_base=float(plan.collateral_seized_base.sum()),
        debt_repaid_base=float(plan.debt_repaid_base.sum()),
        collateral_seized_units_by_asset=seized,
        debt_repaid_units_by_asset=repaid,
        bad_debt_base=bad,
        bad_debt_by_asset_base=bad_by_asset,
        total_bad_debt_base=float(bad.sum()),
    )


def run_scenarios(
    book: Book, scenarios: Sequence[Scenario], *, unmapped_volatile: str = "max"
) -> list[tuple[Scenario, StressResult]]:
    """:func:`apply_shock` for each scenario."""
    return [
        (s, apply_shock(book, scenario_prices(book, s.drops, unmapped_volatile=unmapped_volatile)))
        for s in scenarios
    ]


# the finest liquidation-curve step, in percent: at most 1,001 points over 0..100% (a finer
# step only costs memory and time: a curve over the book is (points x positions))
MIN_CURVE_STEP_PCT = 0.1


def shock_grid(max_drop: float = 0.8, step: float = 0.05) -> FloatArray:
    """Uniform drops 0, step, ..., max_drop (fractions); ValueError for a step under
    MIN_CURVE_STEP_PCT or a max_drop outside (0, 1]."""
    if not (0 < max_drop <= 1) or not (MIN_CURVE_STEP_PCT / 100 - 1e-12 <= step <= max_drop):
        raise ValueError(
            f"curve step {step:g} and max {max_drop:g} must satisfy "
            f"{MIN_CURVE_STEP_PCT / 100:g} <= step <= max <= 1"
        )
    return np.round(np.arange(0.0, max_drop + step / 2.0, step), 10)


@dataclass(frozen=True)
class LiquidationCurve:
    """Per drop (s,): aggregate book measures; ``collateral_at_risk_by_asset_base`` is (s, m)."""

    drops: FloatArray
    n_liquidatable: npt.NDArray[np.int64]
    collateral_at_risk_base: FloatArray
    collateral_at_risk_by_asset_base: FloatArray
    debt_at_risk_base: FloatArray
    bad_debt_base: FloatArray


def _threshold_interval(
    const: FloatArray, slope: FloatArray, sorted_drops: FloatArray
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Grid indices [a, b) where const + r·slope > 0, r = 1 - drop, drops sorted ascending.

    The condition is linear in r, so it holds on a prefix or a suffix of the grid."""
    s = sorted_drops.shape[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        cut = 1.0 + const / slope  # the drop where const + (1 - drop)·slope = 0
    up = slope > 0.0  # positive for r > r*, i.e. drops below the cut: a prefix
    down = slope < 0.0  # positive for drops above the cut: a suffix
    # one binary search: "right" differs from "left" only on exact ties
    left = grid_count_below(sorted_drops, cut, inclusive=False)
    tie = sorted_drops[np.minimum(left, s - 1)] == cut
    right = left + (tie & (left < s))
    a = np.where(down, right, 0)
    b = np.where(up, left, s)
    flat = ~(up | down)
    b = np.where(flat & ~(const > 0.0), 0, b)
    return a, np.maximum(a, b)


def _interval_sum(
    a: npt.NDArray[np.int64], b: npt.NDArray[np.int64], weights: FloatArray | None, s: int
) -> FloatArray:
    """sum over positions of weight where a <= k < b, for every grid index k (difference array)."""
    start = np.bincount(a, weights, minlength=s + 1)
    stop = np.bincount(b, weights, minlength=s + 1)
    return np.cumsum(start - stop)[:s]


def liquidation_curve(
    book: Book,
    drops: npt.ArrayLike,
    shocked: npt.ArrayLike | None = None,
    price_base: npt.ArrayLike | None = None,
) -> LiquidationCurve:
    """Collateral liquidatable (and debt, bad debt, count) vs a uniform drop of the shocked
    assets (default: the volatile ones), all drops at once.

    Every position value is linear in the shock factor r = 1 - drop (a stable part plus r times
    a volatile part), so a position is liquidatable on a prefix or a suffix of the sorted drops
    (and has bad debt on another): each position is placed once with a binary search, and the
    curve is a cumulative sum of its contributions. O(n log s) for any number of drops.
    """
    p = book.price_base if price_base is None else np.asarray(price_base, dtype=np.float64)
    dr = np.asarray(drops, dtype=np.float64)
    order = np.argsort(dr, kind="stable")
    sd = dr[order]
    s = sd.shape[0]
    r = 1.0 - sd
    mask = ~book.is_stable if shocked is None else np.asarray(shocked, dtype=bool)
    pv = np.where(mask, p, 0.0)
    ps = np.where(mask, 0.0, p)
    w_s, w_v = book.collateral_lt @ ps, book.collateral_lt @ pv
    d_s, d_v = book.debt @ ps, book.debt @ pv
    c_s, c_v = book.collateral @ ps, book.collateral @ pv
    # liquidatable: D - W > 0, and D > 0
    a, b = _threshold_interval(d_s - w_s, d_v - w_v, sd)
    a2, b2 = _threshold_interval(d_s, d_v, sd)
    a, b = np.maximum(a, a2), np.minimum(b, b2)
    b = np.maximum(a, b)
    count = _interval_sum(a, b, None, s)
    coll_s, coll_v = _interval_sum(a, b, c_s, s), _interval_sum(a, b, c_v, s)
    debt_s, debt_v = _interval_sum(a, b, d_s, s), _interval_sum(a, b, d_v, s)
    prices = p[None, :] * np.where(mask[None, :], r[:, None], 1.0)  # (s, m)
    by_asset = (
        np.column_stack(
            [_interval_sum(a, b, book.collateral[:, j], s) for j in range(book.n_assets)]
        ).reshape(s, book.n_assets)
        * prices
    )
    # bad debt: D - C > 0
    ba, bb = _threshold_interval(d_s - c_s, d_v - c_v, sd)
    bad = _interval_sum(ba, bb, d_s - c_s, s) + r * _interval_sum(ba, bb, d_v - c_v, s)
    inverse = np.empty_like(order)
    inverse[order] = np.arange(s)
    return LiquidationCurve(
        drops=dr,
        n_liquidatable=np.rint(count).astype(np.int64)[inverse],
        collateral_at_risk_base=(coll_s + r * coll_v)[inverse],
        collateral_at_risk_by_asset_base=by_asset[inverse],
        debt_at_risk_base=(debt_s + r * debt_v)[inverse],
        bad_debt_base=np.maximum(bad, 0.0)[inverse],
    )
