"""The liquidation cascade of `onchain stress`, on the devnet and against its real Uniswap V3 pools.

The command reads the WETH/USDC and WBTC/USDC pools named by the devnet config at the book's
pinned block, models each one's current range as a constant product on virtual reserves, and
iterates drop -> seizures -> sale -> further drop to the fixed point. We check the shape of the
answer (never below the initial drop, strictly above where something is seized, monotone), that
merging a symbol's per-market columns seizes exactly what the columns seize one by one, and the
impact model against the pool itself: QuoterV2 simulates selling the reported seized units at
the same block. Within the current range the model is the pool's own math (virtual reserves,
fee on input), so the two agree to float rounding (we allow 1e-9 of price); beyond it liquidity
thins on the devnet (a +-12% band on top of a wide one), so the real move must be larger.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from onchain.app.market_data.uniswap_v3 import Q96, pool_state_calls, quote_call
from onchain.app.stress_report import merged_symbol_book, read_book_positions, stress_book
from onchain.devnet.build import DevnetInfo
from onchain.devnet.config_file import devnet_config_text
from onchain.protocols.base import MarketRef
from onchain.risk.liquidity import seized_units_at_prices
from onchain.rpc.calls import execute
from onchain.rpc.client import RpcClient
from tests.helpers.cli_support import run

PRICE_TOL = 1e-9  # relative price: float rounding of the model vs the pool's integer math


@pytest.fixture(scope="module")
def config(devnet: DevnetInfo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cascade") / "devnet.toml"
    path.write_text(devnet_config_text(devnet))
    return path


@pytest.fixture(scope="module")
def report(config: Path) -> dict[str, Any]:
    result = run("stress", "--config", str(config), "--drop", "ETH=-10%", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def by_symbol(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["symbol"]: s for s in report["cascade"]["by_symbol"]}


def test_cascade_shape(report: dict[str, Any]) -> None:
    cascade = report["cascade"]
    assert cascade["available"] is True
    symbols = by_symbol(report)
    assert set(symbols) == {"WETH", "WBTC"}
    assert cascade["skipped"] == [{"symbol": "DAI", "reason": "stable: not shocked"}]
    for sym, s in symbols.items():
        steps = s["steps"]
        initial = [x["initial_drop"] for x in steps]
        final = [x["final_drop"] for x in steps]
        assert initial == pytest.approx([0.05 * k for k in range(11)])
        liquidated = [x["seized_units"] > 0 for x in steps]
        assert sum(liquidated) >= 9, sym  # something seized from -10% on
        for x in steps:
            assert x["final_drop"] >= x["initial_drop"], (sym, x)
            if x["seized_units"] > 0:
                assert x["final_drop"] > x["initial_drop"], (sym, x)
                assert x["iterations"] >= 1
                assert x["seized_value_usd"] > 0
            else:
                assert x["final_drop"] == x["initial_drop"]
            assert not x["wiped_out"]
        assert final == sorted(final), (sym, final)
        # the fixed point: final = 1 - (1 - initial)(1 - impact of what it seizes)
        for x in steps:
            expected = 1 - (1 - x["initial_drop"]) * (1 - x["pool_impact"])
            assert x["final_drop"] == pytest.approx(expected, abs=1e-6)
    figures = {
        sym: [(x["initial_drop"], x["final_drop"], x["seized_units"]) for x in s["steps"]]
        for sym, s in symbols.items()
    }
    print(json.dumps(figures))  # for the record (-s)


def test_merged_columns_seize_what_the_columns_seize(devnet: DevnetInfo) -> None:
    """WETH lives in two markets (Aave, in USD; Morpho WETH/USDC, in USDC) and WBTC in three
    (one priced in WETH): the merged book must seize, at any drop, the sum over the columns."""
    assert devnet.morpho is not None
    client = RpcClient(devnet.rpc_url)
    refs = [
        MarketRef("aave-v3", devnet.aave.addresses_provider),
        MarketRef("morpho-blue", devnet.morpho.morpho),
    ]
    block, positions, _ = read_book_positions(client, refs)
    sb = stress_book(block, positions)
    drops = np.linspace(0.0, 0.6, 61)
    for sym, n_markets in (("WETH", 2), ("WBTC", 3)):
        merged = merged_symbol_book(sb, sym)
        assert merged is not None
        book, _, labels = merged
        assert len(labels) == n_markets
        ours = seized_units_at_prices(book, 0, book.price_base[0] * (1 - drops))
        cols = [
            j for j, s in enumerate(sb.book.symbols) if s == sym and sb.book.collateral[:, j].any()
        ]
        assert len(cols) == n_markets
        truth = sum(
            seized_units_at_prices(sb.book, j, sb.book.price_base[j] * (1 - drops)) for j in cols
        )
        assert np.allclose(ours, truth, rtol=1e-9, atol=1e-9 * truth.max()), (sym, ours, truth)
        assert truth[-1] > 0


def real_impact(
    client: RpcClient, devnet: DevnetInfo, symbol: str, units: float, block_number: int
) -> float:
    """The fall of the pool's price of ``symbol`` when QuoterV2 sells ``units`` of it."""
    assert devnet.uniswap is not None
    pool = devnet.uniswap.pools[f"{symbol}/USDC"]
    token = devnet.aave.tokens[symbol]
    usdc = devnet.aave.tokens["USDC"]
    decimals = {"WETH": 18, "WBTC": 8}[symbol]
    block = client.pin_block(block_number)
    ((sqrt_before, _),) = execute(client, pool_state_calls(pool["pool"])[:1], block)
    before = int(sqrt_before) / Q96
    call = quote_call(devnet.uniswap.quoter, token, usdc, pool["fee"], int(units * 10**decimals))
    (quote,) = execute(client, [call], block)
    assert quote is not None and quote.amount_out > 0
    after = quote.sqrt_price_x96_after / Q96
    ratio = (after / before) ** 2  # token1 per token0
    sells_token0 = token.lower() == pool["token0"].lower()
    return 1.0 - (ratio if sells_token0 else 1.0 / ratio)


def test_model_impact_against_quoter(devnet: DevnetInfo, report: dict[str, Any]) -> None:
    client = RpcClient(devnet.rpc_url)
    block = report["block"]["number"]
    symbols = by_symbol(report)
    checked: dict[str, Any] = {}
    # WETH -20%: the sale stays within the pool's current range, the model is exact
    weth = next(x for x in symbols["WETH"]["steps"] if x["initial_drop"] == pytest.approx(0.2))
    assert weth["within_range"] and weth["seized_units"] > 100
    real = real_impact(client, devnet, "WETH", weth["seized_units"], block)
    assert real >= weth["pool_impact"] - PRICE_TOL, (real, weth)
    assert real == pytest.approx(weth["pool_impact"], abs=PRICE_TOL)
    checked["WETH -20%"] = (weth["seized_units"], weth["pool_impact"], real)
    # WBTC: every step beyond the range is a lower bound on the real move
    beyond = [x for x in symbols["WBTC"]["steps"] if x["seized_units"] and not x["within_range"]]
    assert beyond, symbols["WBTC"]["range_drop"]
    for x in beyond[:2]:
        real = real_impact(client, devnet, "WBTC", x["seized_units"], block)
        assert real > x["pool_impact"], (real, x)
        checked[f"WBTC -{x['initial_drop']:.0%}"] = (x["seized_units"], x["pool_impact"], real)
    print(json.dumps(checked))


def test_human_table_and_no_references(config: Path, tmp_path: Path) -> None:
    result = run("stress", "--config", str(config), "--drop", "ETH=-10%")
    assert result.returncode == 0, result.stderr
    assert "Liquidation cascade" in result.stdout and "current range ends at" in result.stdout
    bare = tmp_path / "bare.toml"
    bare.write_text(config.read_text().split("\n[risk]")[0])
    result = run("stress", "--config", str(bare), "--drop", "ETH=-10%", "--json")
    assert result.returncode == 0, result.stderr
    cascade = json.loads(result.stdout)["cascade"]
    assert cascade["available"] is False and cascade["by_symbol"] == []
    assert "[risk.references" in cascade["reason"]
