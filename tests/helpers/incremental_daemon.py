"""Shared by several test modules (moved out of test_incremental_daemon.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select

from onchain.devnet.build import DevnetInfo
from onchain.devnet.chain import DevChain, calldata
from onchain.devnet.control import _in_one_block as in_one_block
from onchain.devnet.morpho import set_prices_everywhere
from onchain.devnet.seed import seeded_address
from onchain.protocols.base import Position
from onchain.store import crud
from onchain.store.db import Store
from tests.helpers.aave_oracle import UINT256_MAX


def _config(
    tmp_path: Path,
    info: DevnetInfo,
    db_url: str,
    *,
    incremental: bool = True,
    store: str = "",
    refresh: str = "reconcile_every_blocks = 2\n",
    at: str = "each-block",
) -> Path:
    """Both devnet markets, each block (or as `at` says); `store`: more [store] lines (e.g. the
    layout), `refresh`: more [jobs.refresh] lines."""
    assert info.morpho is not None
    path = tmp_path / "incremental.toml"
    path.write_text(
        f'[chains.devnet]\nchain_id = {info.chain_id}\nrpc_url = "{info.rpc_url}"\n\n'
        f'[[markets]]\nname = "aave"\nprotocol = "aave-v3"\nchain = "devnet"\n'
        f'address = "{info.aave.addresses_provider}"\n\n'
        f'[[markets]]\nname = "morpho"\nprotocol = "morpho-blue"\nchain = "devnet"\n'
        f'address = "{info.morpho.morpho}"\n\n'
        f'[store]\nurl = "{db_url}"\n{store}\n'
        f'[jobs.refresh]\nat = "{at}"\nmax_blocks_per_run = 50\n'
        f"incremental = {'true' if incremental else 'false'}\n"
        f"{refresh}"
    )
    return path


def _order(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(-1 if v is None else v for v in row)


def _stored(store: Store, number: int, market_id: int) -> list[tuple[Any, ...]]:
    p = crud.T_POSITIONS
    with store.read() as conn:
        rows = conn.execute(
            select(
                crud.T_ACCOUNTS.c.address,
                p.c.health_factor,
                p.c.liquidatable,
                p.c.total_collateral_base,
                p.c.total_debt_base,
                p.c.available_borrows_base,
                p.c.liquidation_threshold_bps,
                p.c.ltv_bps,
            )
            .join(crud.T_ACCOUNTS, crud.T_ACCOUNTS.c.id == p.c.account_id)
            .where((p.c.block_number == number) & (p.c.market_id == market_id))
        ).all()
    return sorted(((r[0].lower(), *r[1:]) for r in rows), key=_order)


def _scanned(positions: list[Position]) -> list[tuple[Any, ...]]:
    return sorted(
        (
            (
                p.account.lower(),
                p.health_factor,
                p.liquidatable,
                p.total_collateral_base,
                p.total_debt_base,
                p.available_borrows_base,
                p.liquidation_threshold_bps,
                p.ltv_bps,
            )
            for p in positions
        ),
        key=_order,
    )


def _move(info: DevnetInfo, step: int) -> None:
    """A price move in both protocols, then a new Aave borrower and a repay in one block."""
    assert info.morpho is not None
    set_prices_everywhere(info.rpc_url, info.aave, info.morpho, {"WETH": 3000.0 - 40 * step})
    chain = DevChain(info.rpc_url)
    who = seeded_address(17, "incremental-daemon", step)
    weth, usdc, pool = info.aave.tokens["WETH"], info.aave.tokens["USDC"], info.aave.pool
    chain.set_balance([who], 10**21)
    txs = [
        (who, weth, calldata("mint(uint256)", 10**18), 150_000),
        (who, weth, calldata("approve(address,uint256)", pool, UINT256_MAX), 100_000),
        (
            who,
            pool,
            calldata("supply(address,uint256,address,uint16)", weth, 10**18, who, 0),
            800_000,
        ),
        (
            who,
            pool,
            calldata("borrow(address,uint256,uint256,uint16,address)", usdc, 10**9, 2, 0, who),
            900_000,
        ),
        *repay_txs(info, info.borrowers[step]),
    ]
    in_one_block(chain, txs)


def repay_txs(info: DevnetInfo, borrower: str) -> list[tuple[str, str, bytes, int]]:
    """An Aave borrower repays 100 USDC (its account state changes, no account is new)."""
    usdc, pool = info.aave.tokens["USDC"], info.aave.pool
    return [
        (borrower, usdc, calldata("mint(uint256)", 10**8), 150_000),
        (borrower, usdc, calldata("approve(address,uint256)", pool, UINT256_MAX), 100_000),
        (
            borrower,
            pool,
            calldata("repay(address,uint256,uint256,address)", usdc, 10**8, 2, borrower),
            800_000,
        ),
    ]
