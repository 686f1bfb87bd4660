"""Retire the first alerts table: the assess job wrote one row per tier change there and
nothing ever delivered them. Alerts are decided and delivered through the outbox
(0003_alerts: alert_outbox, alert_deliveries, alert_attempts) alone. Its rows are dropped,
not copied into the outbox: they were never sent, and queuing them now would deliver stale
tier changes. Downgrade restores the table, empty.

Self-contained, as 0001.

Revision ID: 0006_retire_old_alerts
Revises: 0005_worker_leases
Create Date: 2026-12-06 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_retire_old_alerts"
down_revision: str | None = "0005_worker_leases"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UINT256 = sa.String(78).with_variant(sa.Numeric(78, 0), "postgresql")
UTC = sa.DateTime(timezone=True)
HASH = sa.String(66)
INDEX = "ix_alerts_market_id_account_id_id"


def upgrade() -> None:
    op.drop_index(INDEX, table_name="alerts")
    op.drop_table("alerts")


def downgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", ID, nullable=False),
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
    op.create_index(INDEX, "alerts", ["market_id", "account_id", "id"])
