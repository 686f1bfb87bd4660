"""Shared by several test modules (moved out of test_daemon.py)."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select

from onchain.devnet.build import DevnetInfo
from onchain.devnet.chain import DevChain
from onchain.devnet.control import set_prices
from onchain.store import crud
from onchain.store.db import Store
from tests.helpers.aave_oracle import UINT256_MAX, pool_account_data

ONCHAIN = [str(Path(sys.executable).with_name("onchain"))]


class Daemon:
    """`onchain run` in its own process; its log goes to a file the test prints on failure."""

    def __init__(self, config: Path, *args: str, log: Path | None = None) -> None:
        self.log = log or config.with_suffix(".log")
        with self.log.open("a") as out:
            self.process = subprocess.Popen(
                [*ONCHAIN, "run", "--config", str(config), *args],
                stdout=out,
                stderr=out,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill9(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self, timeout_s: float = 30) -> int:
        """SIGTERM, then the exit code of a graceful stop."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout_s)

    def ensure_dead(self) -> None:
        if self.process.poll() is None:
            self.kill9()


def wait_for(
    condition: Callable[[], Any], timeout_s: float, what: str, poll_s: float = 0.02
) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def upgrade_db(config: Path) -> None:
    done = subprocess.run(
        [*ONCHAIN, "db", "upgrade", "--config", str(config)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


class Mover:
    """Moves the devnet: a random walk of WETH and WBTC prices, a new price every few blocks."""

    def __init__(self, info: DevnetInfo, seed: int) -> None:
        self.info = info
        self.chain = DevChain(info.rpc_url)
        self.rng = random.Random(seed)
        self.prices = {"WETH": 3000.0, "WBTC": 60000.0}
        self.n = 0

    def step(self) -> int:
        if self.n % 3 == 0:
            for symbol in self.prices:
                self.prices[symbol] *= 1 + self.rng.uniform(-0.04, 0.035)
            set_prices(self.info.rpc_url, self.info.aave, self.prices)  # mines one block
        else:
            self.chain.mine(1)
        self.n += 1
        return self.chain.block_number()


def assert_exact(
    store: Store, info: DevnetInfo, blocks: list[int], market: str | None = None
) -> None:
    """Every stored position (of `market`, if named) equals the Aave V3.0.2 Pool's
    getUserAccountData at its block, all six fields; every borrower is there."""
    chain = DevChain(info.rpc_url)
    p = crud.T_POSITIONS
    for number in blocks:
        with store.read() as conn:
            rows = conn.execute(
                select(
                    crud.T_ACCOUNTS.c.address,
                    p.c.total_collateral_base,
                    p.c.total_debt_base,
                    p.c.available_borrows_base,
                    p.c.liquidation_threshold_bps,
                    p.c.ltv_bps,
                    p.c.health_factor,
                    p.c.liquidatable,
                )
                .join(crud.T_ACCOUNTS, crud.T_ACCOUNTS.c.id == p.c.account_id)
                .join(crud.T_MARKETS, crud.T_MARKETS.c.id == p.c.market_id)
                .where(p.c.block_number == number)
                .where(crud.T_MARKETS.c.name == market if market else True)
                .order_by(crud.T_ACCOUNTS.c.address)
            ).all()
        assert len(rows) == len(info.borrowers)
        truth = pool_account_data(chain, info.aave.pool, [r[0] for r in rows], number)
        ours = [(*r[1:6], UINT256_MAX if r[6] is None else r[6]) for r in rows]
        differ = [
            (r[0], mine, theirs)
            for r, mine, theirs in zip(rows, ours, truth, strict=True)
            if mine != theirs
        ]
        assert not differ, f"block {number} differs from getUserAccountData: {differ[:3]}"
        assert [r[7] for r in rows] == [t[5] < 10**18 for t in truth]
