"""Position snapshots carry the risk module's verdict: reason codes, probability of liquidation
within the horizon, health at the next oracle price, and the horizon itself.

All nullable: rows written before this revision, and rows tiered by the health-factor fallback
rule, have none of them. Self-contained (no imports from onchain), as 0001.

Revision ID: 0002
Revises: 0001
Create Date: 2025-06-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
COLUMNS = ("risk_reasons", "liquidation_probability", "pending_health_factor", "horizon_s")


# Plain ALTER TABLE, not batch mode: a batch rebuild of position_snapshots on SQLite drops the
# old table, and with foreign keys on that cascades into asset_positions. SQLite >= 3.35 adds and
# drops these columns in place (nullable, no index, no constraint).


def upgrade() -> None:
    op.add_column("position_snapshots", sa.Column("risk_reasons", JSON, nullable=True))
    for name in COLUMNS[1:]:
        op.add_column("position_snapshots", sa.Column(name, sa.Double(), nullable=True))


def downgrade() -> None:
    for name in reversed(COLUMNS):
        op.drop_column("position_snapshots", name)
