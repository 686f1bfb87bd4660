"""The change layout: a store that grows with what the chain changed, not with book size x
blocks. Per block and market the market's state (`market_states`); per account its protocol
state only when it changed (`account_states`); per position its verdict only when the tier
changes or the health factor crosses a band (`position_verdicts`); and the current book, one
row per position updated in place (`positions_latest`). A block's book is rebuilt exactly from
the first three through the adapter's own math. The snapshot tables stay (their readers and a
daemon set to `layout = "snapshots"` use them).

Self-contained (no imports from onchain), as 0001.

Revision ID: 0007_change_layout
Revises: 0006_retire_old_alerts
Create Date: 2026-12-06 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007_change_layout"
down_revision: str | None = "0006_retire_old_alerts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
UINT256 = sa.String(78).with_variant(sa.Numeric(78, 0), "postgresql")
HASH = sa.String(66)


def _market(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["market_id"], ["markets.id"], name=f"fk_{table}_market_id_markets"
    )


def _account(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["account_id"], ["accounts.id"], name=f"fk_{table}_account_id_accounts"
    )


def _verdict_columns() -> list[sa.Column]:
    return [
        sa.Column("risk_reasons", JSON, nullable=True),
        sa.Column("liquidation_probability", sa.Double(), nullable=True),
        sa.Column("pending_health_factor", sa.Double(), nullable=True),
        sa.Column("horizon_s", sa.Double(), nullable=True),
    ]


def upgrade() -> None:
    op.create_table(
        "market_states",
        sa.Column("market_id", ID, nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.LargeBinary(), nullable=False),
        _market("market_states"),
        sa.PrimaryKeyConstraint("market_id", "block_number", name="pk_market_states"),
    )
    op.create_table(
        "account_states",
        sa.Column("market_id", ID, nullable=False),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.LargeBinary(), nullable=True),
        _market("account_states"),
        _account("account_states"),
        sa.PrimaryKeyConstraint(
            "market_id", "account_id", "block_number", name="pk_account_states"
        ),
    )
    op.create_index(
        "ix_account_states_market_id_block_number", "account_states", ["market_id", "block_number"]
    )
    op.create_table(
        "position_verdicts",
        sa.Column("market_id", ID, nullable=False),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("market_key", HASH, nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("health_factor", UINT256, nullable=True),
        sa.Column("risk_tier", sa.String(16), nullable=True),
        sa.Column("risk_reason", sa.Text(), nullable=True),
        *_verdict_columns(),
        _market("position_verdicts"),
        _account("position_verdicts"),
        sa.PrimaryKeyConstraint(
            "market_id", "account_id", "market_key", "block_number", name="pk_position_verdicts"
        ),
    )
    op.create_index(
        "ix_position_verdicts_market_id_block_number",
        "position_verdicts",
        ["market_id", "block_number"],
    )
    op.create_table(
        "positions_latest",
        sa.Column("market_id", ID, nullable=False),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("market_key", HASH, nullable=False),
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
        *_verdict_columns(),
        sa.Column("extra", JSON, nullable=False),
        sa.Column("assets", JSON, nullable=False),
        _market("positions_latest"),
        _account("positions_latest"),
        sa.PrimaryKeyConstraint(
            "market_id", "account_id", "market_key", name="pk_positions_latest"
        ),
    )
    if op.get_bind().dialect.name == "postgresql":  # room in each page for HOT updates
        op.execute("ALTER TABLE positions_latest SET (fillfactor = 50)")


def downgrade() -> None:
    """Refused while a block is stored in the change layout alone (its positions would be
    lost): the snapshot layout keeps every block whole, so those blocks must be written again
    with `layout = "snapshots"` or "both" (or pruned) first."""
    alone = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT count(*) FROM market_snapshots s JOIN market_states ms"
                " ON ms.market_id = s.market_id AND ms.block_number = s.block_number"
                " WHERE s.positions > 0 AND NOT EXISTS"
                " (SELECT 1 FROM position_snapshots p WHERE p.snapshot_id = s.id)"
            )
        )
        .scalar_one()
    )
    if alone:
        raise RuntimeError(
            f"{alone} block(s) are stored in the change layout alone; a downgrade would lose "
            "their positions: write them again with layout = snapshots or both, or prune them"
        )
    for table in ("positions_latest", "position_verdicts", "account_states", "market_states"):
        op.drop_table(table)
