"""Reading history back: `onchain history 0xACCOUNT` (health over time, a sparkline in the
terminal) and `onchain report` (at-risk positions now, by tier, by market, with totals), on
SQLite and PostgreSQL, checked against what the Pool itself reports at each block."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from onchain.cli import main
from onchain.cli_store import sparkline
from onchain.config import load_config
from onchain.devnet.build import DevnetInfo
from onchain.devnet.chain import DevChain
from onchain.devnet.control import set_prices
from onchain.jobs.context import JobContext
from onchain.jobs.maintenance import assess_job
from onchain.jobs.refresh import refresh_job
from onchain.store import crud
from onchain.store.db import Store
from onchain.store.models import TIERS
from tests.helpers.aave_oracle import UINT256_MAX, pool_account_data

ONCHAIN = [str(Path(sys.executable).with_name("onchain"))]
WAD = 10**18


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`onchain ARGS` in this process (the console script's own entry point)."""
    capsys.readouterr()
    argv = sys.argv
    sys.argv = ["onchain", *args]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        sys.argv = argv
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def history(devnet: DevnetInfo, store: Store, tmp_path: Path) -> tuple[Path, list[int]]:
    """Six blocks of a falling ETH price refreshed into the store; the config naming it."""
    config = tmp_path / "onchain.toml"
    config.write_text(
        f'[chains.devnet]\nchain_id = {devnet.chain_id}\nrpc_url = "{devnet.rpc_url}"\n\n'
        f'[[markets]]\nname = "aave-v3-devnet"\nprotocol = "aave-v3"\nchain = "devnet"\n'
        f'address = "{devnet.aave.addresses_provider}"\n\n'
        f'[store]\nurl = "{store.engine.url.render_as_string(False)}"\n\n'
        '[jobs.refresh]\nat = "each-block"\n'
    )
    cfg = load_config(config)
    ctx = JobContext(cfg, store, crud.sync_markets(store, cfg))
    counts: Counter[str] = Counter()
    assert refresh_job(ctx, counts) == []
    for step in range(5):
        set_prices(devnet.rpc_url, devnet.aave, {"WETH": 3000.0 * (1 - 0.02 * (step + 1))})
    assert refresh_job(ctx, counts) == [] and assess_job(ctx, counts) == []
    blocks = sorted(crud.snapshot_hashes(store, ctx.markets[0].id))
    assert len(blocks) == 6 and counts["blocks_written"] == 6
    return config, blocks


def riskiest_account(store: Store, block: int) -> str:
    p = crud.T_POSITIONS
    with store.read() as conn:
        return str(
            conn.execute(
                select(crud.T_ACCOUNTS.c.address)
                .join(p, p.c.account_id == crud.T_ACCOUNTS.c.id)
                .where((p.c.block_number == block) & p.c.health_factor.is_not(None))
                .order_by(p.c.health_factor_float, crud.T_ACCOUNTS.c.address)
                .limit(1)
            ).scalar_one()
        )


def test_history_shows_an_accounts_exact_health_over_time(
    devnet: DevnetInfo,
    store: Store,
    history: tuple[Path, list[int]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    config, blocks = history
    account = riskiest_account(store, blocks[-1])
    code, out, err = cli(capsys, "history", account, "--config", str(config), "--json")
    assert code == 0, err
    (book,) = json.loads(out)
    assert book["market"] == "aave-v3-devnet" and book["account"] == account
    assert [p["block_number"] for p in book["points"]] == blocks
    chain = DevChain(devnet.rpc_url)
    truth = [pool_account_data(chain, devnet.aave.pool, [account], b)[0] for b in blocks]
    assert [int(p["health_factor"]) for p in book["points"]] == [t[5] for t in truth]
    assert [int(p["total_debt_base"]) for p in book["points"]] == [t[1] for t in truth]
    hfs = [t[5] for t in truth]
    assert hfs[-1] < hfs[0]  # ETH fell: this account's health with it

    human = subprocess.run(  # the console script a user types
        [*ONCHAIN, "history", account.lower(), "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert human.returncode == 0, human.stderr
    assert account in human.stdout and "6 snapshots" in human.stdout
    shown = f"{hfs[-1] // 10**14 // 10**4}.{hfs[-1] // 10**14 % 10**4:04d}"  # truncated
    assert f"now {shown}" in human.stdout
    assert any(ch in human.stdout for ch in "▁▂▃▄▅▆▇█")

    code, out, err = cli(capsys, "history", "0x" + "00" * 19 + "01", "--config", str(config))
    assert code == 2 and out == "" and "no snapshots of" in err  # an account never stored
    code, _out, err = cli(capsys, "history", "0xnothex", "--config", str(config))
    assert code == 2 and "malformed account address" in err


def test_report_lists_what_is_at_risk_now_by_tier_and_market_with_exact_totals(
    devnet: DevnetInfo,
    store: Store,
    history: tuple[Path, list[int]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    config, blocks = history
    code, out, err = cli(capsys, "report", "--config", str(config), "--json")
    assert code == 0, err
    (book,) = json.loads(out)
    assert book["block_number"] == blocks[-1] and book["market"] == "aave-v3-devnet"
    with store.read() as conn:
        accounts = [
            r[0]
            for r in conn.execute(
                select(crud.T_ACCOUNTS.c.address).order_by(crud.T_ACCOUNTS.c.address)
            )
        ]
    truth = pool_account_data(DevChain(devnet.rpc_url), devnet.aave.pool, accounts, blocks[-1])
    with_debt = [(a, t) for a, t in zip(accounts, truth, strict=True) if t[1] > 0]
    assert book["with_debt"] == len(with_debt)
    assert book["total_debt_base"] == str(sum(t[1] for t in truth))
    assert book["total_collateral_base"] == str(sum(t[0] for t in truth))
    tiers: dict[str, Any] = book["tiers"]
    assert sum(t["positions"] for t in tiers.values()) == len(with_debt)
    assert sum(int(t["debt_base"]) for t in tiers.values()) == sum(t[1] for t in truth)
    liquidatable = {a for a, t in with_debt if t[5] < WAD}
    assert liquidatable and tiers["LIQUIDATABLE"]["positions"] == len(liquidatable)
    at_risk = {r["account"]: r for r in book["at_risk"]}
    assert {a for a, r in at_risk.items() if r["risk_tier"] == "LIQUIDATABLE"} == liquidatable
    # tiers are the risk module's (tests/daemon/test_daemon_risk.py): every position not SAFE is listed
    # with its reason codes and probability, worst tier first, then likeliest, then lowest health
    assert len(at_risk) == sum(t["positions"] for k, t in tiers.items() if k != "SAFE")
    assert all(r["reasons"] and r["liquidation_probability"] is not None for r in at_risk.values())
    ranks = [
        (TIERS.index(r["risk_tier"]), -r["liquidation_probability"], int(r["health_factor"]))
        for r in book["at_risk"]
    ]
    assert ranks == sorted(ranks)  # riskiest first
    assert all(t[5] != UINT256_MAX for _a, t in with_debt)

    code, out, err = cli(capsys, "report", "--config", str(config), "--limit", "3")
    assert code == 0, err
    for words in ("aave-v3-devnet", "LIQUIDATABLE", "CRITICAL", "WATCH", "total", "(3 of"):
        assert words in out, words
    code, out, err = cli(capsys, "report", "--config", str(config), "--market", "nope", "--json")
    assert code == 2 and out == "" and "aave-v3-devnet" in err  # the known names


def test_sparkline_keeps_the_dips_and_marks_liquidatable_points() -> None:
    line = sparkline([2.0, 1.5, None, 0.95, 1.2], width=80)
    assert line.startswith("█") and "·" in line and "[red]▁[/]" in line
    squeezed = sparkline([2.0] * 50 + [0.9] + [2.0] * 49, width=10)
    assert squeezed.count("[red]") == 1  # a one-block dip survives the downsampling
