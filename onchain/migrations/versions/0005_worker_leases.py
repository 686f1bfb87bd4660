"""Several `onchain run --worker NAME` processes over one PostgreSQL database: each worker's
heartbeat (and the lease time it keeps), and one lease row per market saying which worker
refreshes it until when. `epoch` grows at every takeover: a write checks it in its own
transaction, so a worker that lost a market (paused, partitioned, too slow) cannot write it.
The market's refresh cursor stays in `cursors`, moved in the same transaction as its snapshot.

Self-contained (no imports from onchain), as 0001.

Revision ID: 0005_worker_leases
Revises: 0004_api
Create Date: 2026-12-06 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_worker_leases"
down_revision: str | None = "0004_api"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("lease_seconds", sa.Double(), nullable=False),
        sa.Column("started_at", UTC, nullable=False),
        sa.Column("heartbeat_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_workers"),
    )
    op.create_table(
        "market_leases",
        sa.Column("market_id", ID, autoincrement=False, nullable=False),
        sa.Column("holder", sa.String(64), nullable=True),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", UTC, nullable=True),
        sa.Column("acquired_at", UTC, nullable=True),
        sa.ForeignKeyConstraint(
            ["market_id"], ["markets.id"], name="fk_market_leases_market_id_markets"
        ),
        sa.PrimaryKeyConstraint("market_id", name="pk_market_leases"),
    )
    op.create_index("ix_market_leases_holder", "market_leases", ["holder"])


def downgrade() -> None:
    op.drop_index("ix_market_leases_holder", table_name="market_leases")
    op.drop_table("market_leases")
    op.drop_table("workers")
