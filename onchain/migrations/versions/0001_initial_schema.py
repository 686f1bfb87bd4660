"""Initial schema: chains, markets, assets, accounts, discovery, snapshots, job runs, alerts.

Self-contained on purpose (no imports from onchain): a migration must mean the same thing after
the models move on. Exact integers are NUMERIC(78,0) on PostgreSQL and decimal text on SQLite,
as onchain.store.types.Uint256 reads and writes them.

Revision ID: 0001
Revises:
Create Date: 2025-01-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
UINT256 = sa.String(78).with_variant(sa.Numeric(78, 0), "postgresql")
UTC = sa.DateTime(timezone=True)
ADDRESS = sa.String(42)
HASH = sa.String(66)


def _id() -> sa.Column:
    return sa.Column("id", ID, nullable=False)


def upgrade() -> None:
    op.create_table(
        "chains",
        sa.Column("chain_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("chain_id", name="pk_chains"),
    )
    op.create_table(
        "job_runs",
        _id(),
        sa.Column("job", sa.String(32), nullable=False),
        sa.Column("started_at", UTC, nullable=False),
        sa.Column("finished_at", UTC, nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("counts", JSON, nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_job_runs"),
    )
    op.create_index("ix_job_runs_job_started_at", "job_runs", ["job", "started_at"])
    op.create_index("ix_job_runs_outcome", "job_runs", ["outcome"])
    for table in ("accounts", "assets"):
        extra: list[Any] = (
            [
                sa.Column("symbol", sa.String(64), nullable=False),
                sa.Column("decimals", sa.Integer(), nullable=False),
            ]
            if table == "assets"
            else []
        )
        op.create_table(
            table,
            _id(),
            sa.Column("chain_id", sa.BigInteger(), nullable=False),
            sa.Column("address", ADDRESS, nullable=False),
            *extra,
            sa.ForeignKeyConstraint(
                ["chain_id"], ["chains.chain_id"], name=f"fk_{table}_chain_id_chains"
            ),
            sa.PrimaryKeyConstraint("id", name=f"pk_{table}"),
            sa.UniqueConstraint("chain_id", "address", name=f"uq_{table}_chain_id_address"),
        )
    op.create_table(
        "markets",
        _id(),
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("protocol", sa.String(64), nullable=False),
        sa.Column("version", sa.String(64), nullable=True),
        sa.Column("address", ADDRESS, nullable=False),
        sa.Column("scope", HASH, nullable=False),
        sa.Column("addresses", JSON, nullable=False),
        sa.Column("settings", JSON, nullable=False),
        sa.Column("base_currency_decimals", sa.Integer(), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["chain_id"], ["chains.chain_id"], name="fk_markets_chain_id_chains"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_markets"),
        sa.UniqueConstraint(
            "chain_id",
            "protocol",
            "address",
            "scope",
            name="uq_markets_chain_id_protocol_address_scope",
        ),
    )
    op.create_index("ix_markets_name", "markets", ["name"])
    op.create_table(
        "alerts",
        _id(),
        sa.Column("market_id", ID, nullable=False),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("market_key", HASH, nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("tier", sa.String(16), nullable=False),
        sa.Column("previous_tier", sa.String(16), nullable=True),
        sa.Column("health_factor", UINT256, nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("delivered_at", UTC, nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name="fk_alerts_account_id_accounts"
        ),
        sa.ForeignKeyConstraint(["market_id"], ["markets.id"], name="fk_alerts_market_id_markets"),
        sa.PrimaryKeyConstraint("id", name="pk_alerts"),
    )
    op.create_index(
        "ix_alerts_market_id_account_id_id", "alerts", ["market_id", "account_id", "id"]
    )
    op.create_table(
        "cursors",
        sa.Column("market_id", ID, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("block_hash", HASH, nullable=True),
        sa.Column("updated_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(["market_id"], ["markets.id"], name="fk_cursors_market_id_markets"),
        sa.PrimaryKeyConstraint("market_id", "kind", name="pk_cursors"),
    )
    op.create_table(
        "market_accounts",
        sa.Column("market_id", ID, nullable=False),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("first_seen_block", sa.BigInteger(), nullable=False),
        sa.Column("discovered_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name="fk_market_accounts_account_id_accounts"
        ),
        sa.ForeignKeyConstraint(
            ["market_id"], ["markets.id"], name="fk_market_accounts_market_id_markets"
        ),
        sa.PrimaryKeyConstraint("market_id", "account_id", name="pk_market_accounts"),
    )
    op.create_index(
        "ix_market_accounts_market_id_first_seen_block",
        "market_accounts",
        ["market_id", "first_seen_block"],
    )
    op.create_table(
        "market_snapshots",
        _id(),
        sa.Column("market_id", ID, nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("block_hash", HASH, nullable=False),
        sa.Column("block_timestamp", sa.BigInteger(), nullable=False),
        sa.Column("positions", sa.Integer(), nullable=False),
        sa.Column("asset_rows", sa.Integer(), nullable=False),
        sa.Column("with_debt", sa.Integer(), nullable=False),
        sa.Column("liquidatable", sa.Integer(), nullable=False),
        sa.Column("at_risk", sa.Integer(), nullable=False),
        sa.Column("details", JSON, nullable=False),
        sa.Column("taken_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["market_id"], ["markets.id"], name="fk_market_snapshots_market_id_markets"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_market_snapshots"),
        sa.UniqueConstraint(
            "market_id", "block_number", name="uq_market_snapshots_market_id_block_number"
        ),
    )
    op.create_index(
        "ix_market_snapshots_market_id_block_timestamp",
        "market_snapshots",
        ["market_id", "block_timestamp"],
    )
    op.create_table(
        "position_snapshots",
        sa.Column("snapshot_id", ID, nullable=False),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("market_key", HASH, nullable=False),
        sa.Column("market_id", ID, nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("block_hash", HASH, nullable=False),
        sa.Column("block_timestamp", sa.BigInteger(), nullable=False),
        sa.Column("base_currency_decimals", sa.Integer(), nullable=False),
        sa.Column("health_factor", UINT256, nullable=True),
        sa.Column("health_factor_float", sa.Double(), nullable=True),
        sa.Column("liquidatable", sa.Boolean(), nullable=False),
        sa.Column("total_collateral_base", UINT256, nullable=False),
        sa.Column("total_debt_base", UINT256, nullable=False),
        sa.Column("available_borrows_base", UINT256, nullable=False),
        sa.Column("liquidation_threshold_bps", sa.Integer(), nullable=False),
        sa.Column("ltv_bps", sa.Integer(), nullable=False),
        sa.Column("risk_tier", sa.String(16), nullable=False),
        sa.Column("risk_reason", sa.Text(), nullable=False),
        sa.Column("extra", JSON, nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name="fk_position_snapshots_account_id_accounts"
        ),
        sa.ForeignKeyConstraint(
            ["market_id"], ["markets.id"], name="fk_position_snapshots_market_id_markets"
        ),
        sa.ForeignKeyConstraint(
            ["snapshot_id"],
            ["market_snapshots.id"],
            name="fk_position_snapshots_snapshot_id_market_snapshots",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "snapshot_id", "account_id", "market_key", name="pk_position_snapshots"
        ),
    )
    op.create_index(
        "ix_position_snapshots_account_id_market_id_block_number",
        "position_snapshots",
        ["account_id", "market_id", "block_number"],
    )
    op.create_index(
        "ix_position_snapshots_snapshot_id_health_factor_float",
        "position_snapshots",
        ["snapshot_id", "health_factor_float"],
    )
    op.create_table(
        "reserve_snapshots",
        sa.Column("snapshot_id", ID, nullable=False),
        sa.Column("asset_id", ID, nullable=False),
        sa.Column("price_base", UINT256, nullable=False),
        sa.Column("supply_index", UINT256, nullable=True),
        sa.Column("borrow_index", UINT256, nullable=True),
        sa.Column("available_liquidity_raw", UINT256, nullable=True),
        sa.Column("total_debt_raw", UINT256, nullable=True),
        sa.Column("utilization", sa.Double(), nullable=True),
        sa.Column("extra", JSON, nullable=False),
        sa.ForeignKeyConstraint(
            ["asset_id"], ["assets.id"], name="fk_reserve_snapshots_asset_id_assets"
        ),
        sa.ForeignKeyConstraint(
            ["snapshot_id"],
            ["market_snapshots.id"],
            name="fk_reserve_snapshots_snapshot_id_market_snapshots",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("snapshot_id", "asset_id", name="pk_reserve_snapshots"),
    )
    op.create_table(
        "asset_positions",
        sa.Column("snapshot_id", sa.BigInteger(), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("market_key", HASH, nullable=False),
        sa.Column("asset_id", ID, nullable=False),
        sa.Column("price_base", UINT256, nullable=False),
        sa.Column("collateral_raw", UINT256, nullable=False),
        sa.Column("debt_raw", UINT256, nullable=False),
        sa.Column("collateral_base", UINT256, nullable=False),
        sa.Column("debt_base", UINT256, nullable=False),
        sa.Column("collateral_enabled", sa.Boolean(), nullable=False),
        sa.Column("liquidation_threshold_bps", sa.Integer(), nullable=False),
        sa.Column("liquidation_price_base", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(
            ["asset_id"], ["assets.id"], name="fk_asset_positions_asset_id_assets"
        ),
        sa.ForeignKeyConstraint(
            ["snapshot_id", "account_id", "market_key"],
            [
                "position_snapshots.snapshot_id",
                "position_snapshots.account_id",
                "position_snapshots.market_key",
            ],
            name="fk_asset_positions_position_snapshots",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "snapshot_id", "account_id", "market_key", "asset_id", name="pk_asset_positions"
        ),
    )


def downgrade() -> None:
    for table in (
        "asset_positions",
        "reserve_snapshots",
        "position_snapshots",
        "market_snapshots",
        "market_accounts",
        "cursors",
        "alerts",
        "markets",
        "assets",
        "accounts",
        "job_runs",
        "chains",
    ):
        op.drop_table(table)
