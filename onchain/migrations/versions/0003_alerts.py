"""Alert delivery: the outbox (one row per alert a rule fired, written with its snapshot), one
delivery row per alert and channel, every attempt, and each rule's state per position.

Self-contained (no imports from onchain), as 0001.

Revision ID: 0003_alerts
Revises: 0002
Create Date: 2026-12-06 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003_alerts"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
UINT256 = sa.String(78).with_variant(sa.Numeric(78, 0), "postgresql")
UTC = sa.DateTime(timezone=True)
ADDRESS = sa.String(42)
HASH = sa.String(66)


def upgrade() -> None:
    op.create_table(
        "alert_outbox",
        sa.Column("id", ID, nullable=False),
        sa.Column("uid", sa.String(64), nullable=False),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("market_id", sa.BigInteger(), nullable=True),
        sa.Column("account", ADDRESS, nullable=True),
        sa.Column("market_key", HASH, nullable=True),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("block_hash", HASH, nullable=False),
        sa.Column("tier", sa.String(16), nullable=True),
        sa.Column("previous_tier", sa.String(16), nullable=True),
        sa.Column("health_factor", UINT256, nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_alert_outbox"),
        sa.UniqueConstraint("uid", name="uq_alert_outbox_uid"),
    )
    op.create_index("ix_alert_outbox_created_at", "alert_outbox", ["created_at"])
    op.create_table(
        "alert_deliveries",
        sa.Column("outbox_id", sa.BigInteger(), nullable=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTC, nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_at", UTC, nullable=True),
        sa.PrimaryKeyConstraint("outbox_id", "channel", name="pk_alert_deliveries"),
    )
    op.create_index(
        "ix_alert_deliveries_state_next_attempt_at",
        "alert_deliveries",
        ["state", "next_attempt_at"],
    )
    op.create_table(
        "alert_attempts",
        sa.Column("id", ID, nullable=False),
        sa.Column("outbox_id", sa.BigInteger(), nullable=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("attempted_at", UTC, nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_alert_attempts"),
    )
    op.create_index(
        "ix_alert_attempts_outbox_id_channel", "alert_attempts", ["outbox_id", "channel"]
    )
    op.create_table(
        "alert_rule_state",
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("market_id", sa.BigInteger(), nullable=False),
        sa.Column("account", sa.String(42), nullable=False),
        sa.Column("market_key", HASH, nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("reported_tier", sa.String(16), nullable=True),
        sa.Column("rearm_wad", UINT256, nullable=True),
        sa.Column("last_fired_at", UTC, nullable=True),
        sa.Column("observed", JSON, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint(
            "rule", "market_id", "account", "market_key", name="pk_alert_rule_state"
        ),
    )


def downgrade() -> None:
    op.drop_table("alert_rule_state")
    op.drop_index("ix_alert_attempts_outbox_id_channel", table_name="alert_attempts")
    op.drop_table("alert_attempts")
    op.drop_index("ix_alert_deliveries_state_next_attempt_at", table_name="alert_deliveries")
    op.drop_table("alert_deliveries")
    op.drop_index("ix_alert_outbox_created_at", table_name="alert_outbox")
    op.drop_table("alert_outbox")
