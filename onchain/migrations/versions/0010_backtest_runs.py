"""`onchain backtest --store` keeps its runs: one `backtest_runs` row per run with its parameters,
counts, per-model headline figures and the whole report as JSON, for the API and the dashboard.

Self-contained (no imports from onchain), as 0001.

Revision ID: 0010_backtest_runs
Revises: 0009_latest_buckets
Create Date: 2026-12-06 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010_backtest_runs"
down_revision: str | None = "0009_latest_buckets"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
UTC = sa.DateTime(timezone=True)
TABLE = "backtest_runs"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("id", ID, nullable=False),
        sa.Column("ran_at", UTC, nullable=False),
        sa.Column("prices", sa.Text(), nullable=False),
        sa.Column("window_start", UTC, nullable=False),
        sa.Column("window_end", UTC, nullable=False),
        sa.Column("horizon_h", sa.Integer(), nullable=False),
        sa.Column("cadence_h", sa.Integer(), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("borrowers", sa.Integer(), nullable=False),
        sa.Column("markets", JSON, nullable=False),
        sa.Column("models", JSON, nullable=False),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.Column("liquidations", sa.Integer(), nullable=False),
        sa.Column("summary", JSON, nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),  # json on PostgreSQL: key order kept
        sa.PrimaryKeyConstraint("id", name=f"pk_{TABLE}"),
    )
    op.create_index(f"ix_{TABLE}_ran_at", TABLE, ["ran_at"])


def downgrade() -> None:
    op.drop_index(f"ix_{TABLE}_ran_at", table_name=TABLE)
    op.drop_table(TABLE)
