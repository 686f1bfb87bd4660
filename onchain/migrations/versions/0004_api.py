"""What the HTTP API reads fast and exactly: an index for positions by tier and health within
a snapshot (tier filters, the riskiest first, tier counts over time), by debt (sorts and the
minimum-debt filter; on SQLite by digits, as uint256 is text there), and each asset's
liquidation price as the exact integer the adapter computed (the float column loses digits
past 2**53, e.g. prices in an 18-decimal loan token), so a stored position reads back equal
to `scan --json`.

Nullable: rows written before this revision keep only the float. Self-contained, as 0001.

Revision ID: 0004_api
Revises: 0003_alerts
Create Date: 2026-12-06 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_api"
down_revision: str | None = "0003_alerts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UINT256 = sa.String(78).with_variant(sa.Numeric(78, 0), "postgresql")
INDEX = "ix_position_snapshots_snapshot_id_risk_tier_health_factor_float"
DEBT = "ix_position_snapshots_snapshot_id_total_debt_base"
# SQLite keeps uint256 as text: its numeric order is (number of digits, digits)
DEBT_DIGITS = "ix_position_snapshots_debt_digits"


def upgrade() -> None:
    # plain ALTER TABLE (see 0002: a batch rebuild would cascade on SQLite)
    op.add_column(
        "asset_positions", sa.Column("liquidation_price_base_exact", UINT256, nullable=True)
    )
    op.create_index(
        INDEX, "position_snapshots", ["snapshot_id", "risk_tier", "health_factor_float"]
    )
    op.create_index(DEBT, "position_snapshots", ["snapshot_id", "total_debt_base"])
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            f"CREATE INDEX {DEBT_DIGITS} ON position_snapshots "
            "(snapshot_id, length(total_debt_base), total_debt_base)"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(f"DROP INDEX {DEBT_DIGITS}")
    op.drop_index(DEBT, table_name="position_snapshots")
    op.drop_index(INDEX, table_name="position_snapshots")
    op.drop_column("asset_positions", "liquidation_price_base_exact")
