"""The latest view's rows say which block their details are from (`detail_block`): a block
updates the columns prices move in every row (health factor, collateral, debt, liquidatable,
verdict) and writes a row whole only where more changed, so the per-block cost follows what
changed. Readers rebuild a row's details from the stored states where they are older than its
block. Existing rows were written whole: their details are their block's.

Self-contained (no imports from onchain), as 0001.

Revision ID: 0008_latest_detail_block
Revises: 0007_change_layout
Create Date: 2026-12-06 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_latest_detail_block"
down_revision: str | None = "0007_change_layout"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("positions_latest", sa.Column("detail_block", sa.BigInteger(), nullable=True))
    op.execute("UPDATE positions_latest SET detail_block = block_number")


def downgrade() -> None:
    """Refused while a latest row holds details older than its block (without the column a
    reader would serve them as the block's): a block refreshed with `layout = "both"` or
    "snapshots" writes every row whole, after which the downgrade goes through."""
    stale = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT count(*) FROM positions_latest"
                " WHERE detail_block IS NOT NULL AND detail_block <> block_number"
            )
        )
        .scalar_one()
    )
    if stale:
        raise RuntimeError(
            f"{stale} latest row(s) hold details older than their block; a downgrade would "
            'serve them as current: refresh one block with layout = "both" first'
        )
    with op.batch_alter_table("positions_latest") as batch:
        batch.drop_column("detail_block")
