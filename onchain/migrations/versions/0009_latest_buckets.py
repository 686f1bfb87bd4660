"""The latest view's indexed sort keys get coarse, indexed twins (`hf_bucket`, `debt_bucket`;
onchain/store/buckets.py): the values move every block and carry no index (the update in place stays cheap), their buckets seldom change, so a
page of positions reads the index range of the buckets it covers and sorts only those rows,
and tier counts come from an index. Existing rows get their buckets here.

Its widest columns, the protocol extras and the asset rows, move to `positions_latest_details`
(written only with a row whole): the per-block update in place then rewrites narrow rows, and
a pass over the book (report, tier counts) reads narrow pages.

Self-contained (no imports from onchain), as 0001: the bucket functions are repeated below
and must stay equal to onchain/store/buckets.py (tests/store/test_change_layout_store.py
compares them).

Revision ID: 0009_latest_buckets
Revises: 0008_latest_detail_block
Create Date: 2026-12-06 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence
from math import frexp

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009_latest_buckets"
down_revision: str | None = "0008_latest_detail_block"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
HASH = sa.String(66)
DETAILS = "positions_latest_details"
COLUMNS = ("hf_bucket", "debt_bucket")
INDEXES = (
    ("risk_tier", "hf_bucket"),
    ("debt_bucket",),
)
PER_OCTAVE = 4
HF_PER_OCTAVE = 16
ZERO = -1_000_000


def float_bucket(value: float | None, per_octave: int = PER_OCTAVE) -> int | None:
    if value is None or value != value:
        return None
    if value > 0:
        mantissa, exponent = frexp(value)
        return exponent * per_octave + int((2 * mantissa - 1) * per_octave)
    if value == 0:
        return ZERO
    return 2 * ZERO - (float_bucket(-value, per_octave) or 0)


def int_bucket(value: int, per_octave: int = PER_OCTAVE) -> int:
    if value < 2 * per_octave:
        return max(0, value)
    bits = value.bit_length()
    top = value >> (bits - per_octave.bit_length())
    return bits * per_octave + top - per_octave


def _index_name(columns: Sequence[str]) -> str:
    return "ix_positions_latest_market_id_" + "_".join(columns)


def upgrade() -> None:
    op.create_table(
        DETAILS,
        sa.Column("market_id", ID, nullable=False),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("market_key", HASH, nullable=False),
        sa.Column("extra", JSON, nullable=False),
        sa.Column("assets", JSON, nullable=False),
        sa.ForeignKeyConstraint(
            ["market_id"], ["markets.id"], name=f"fk_{DETAILS}_market_id_markets"
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=f"fk_{DETAILS}_account_id_accounts"
        ),
        sa.PrimaryKeyConstraint("market_id", "account_id", "market_key", name=f"pk_{DETAILS}"),
    )
    if op.get_bind().dialect.name == "postgresql":  # a row written whole again: HOT, in place
        op.execute(f"ALTER TABLE {DETAILS} SET (fillfactor = 50)")
    op.execute(
        f"INSERT INTO {DETAILS} (market_id, account_id, market_key, extra, assets)"
        " SELECT market_id, account_id, market_key, extra, assets FROM positions_latest"
    )
    for name in COLUMNS:
        op.add_column("positions_latest", sa.Column(name, sa.Integer(), nullable=True))
    bind = op.get_bind()
    rows = bind.execute(
        sa.text(
            "SELECT market_id, account_id, market_key, health_factor_float, total_debt_base"
            " FROM positions_latest"
        )
    ).all()
    values = [
        {
            "m": r[0],
            "a": r[1],
            "k": r[2],
            "hf": float_bucket(r[3], HF_PER_OCTAVE),
            "debt": int_bucket(int(r[4])),
        }
        for r in rows
    ]
    if values:
        bind.execute(
            sa.text(
                "UPDATE positions_latest SET hf_bucket = :hf, debt_bucket = :debt"
                " WHERE market_id = :m AND account_id = :a AND market_key = :k"
            ),
            values,
        )
    with op.batch_alter_table("positions_latest") as batch:
        batch.drop_column("extra")
        batch.drop_column("assets")
    for columns in INDEXES:
        op.create_index(_index_name(columns), "positions_latest", ["market_id", *columns])


def downgrade() -> None:
    for columns in INDEXES:
        op.drop_index(_index_name(columns), table_name="positions_latest")
    for name in ("extra", "assets"):
        op.add_column("positions_latest", sa.Column(name, JSON, nullable=True))
        empty = "'{}'" if name == "extra" else "'[]'"
        op.execute(
            f"UPDATE positions_latest SET {name} = COALESCE((SELECT d.{name} FROM {DETAILS} d"
            " WHERE d.market_id = positions_latest.market_id"
            " AND d.account_id = positions_latest.account_id"
            f" AND d.market_key = positions_latest.market_key), {empty})"
        )
    with op.batch_alter_table("positions_latest") as batch:
        for name in ("extra", "assets"):
            batch.alter_column(name, existing_type=JSON, nullable=False)
        for name in COLUMNS:
            batch.drop_column(name)
    op.drop_table(DETAILS)
