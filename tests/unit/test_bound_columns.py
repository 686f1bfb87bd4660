"""The lean write path binds the latest view's and change tables' columns itself
(`changes._bound`, each distinct value once): every value must bind as the column's type binds
it, including values Python calls equal that bind otherwise (True, 1 and 1.0 in JSON)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.dialects import sqlite

from onchain.store import changes

DIALECT = sqlite.dialect()


def _theirs(name: str, values: list[Any]) -> list[Any]:
    column = changes.T_LATEST.c[name]
    bind = column.type.dialect_impl(DIALECT).bind_processor(DIALECT)
    return values if bind is None else [bind(v) for v in values]


@pytest.mark.parametrize(
    ("name", "values"),
    [
        ("risk_reasons", [["A"], [1], [True], [1.0], None, ["A"], [], [[1]], ["A", "B"]]),
        ("risk_reasons", [["HF_BELOW_1"], ["HF_BELOW_1"], None, []]),
        ("risk_reasons", [[1], [True], [1.0]]),  # equal in Python, three JSON texts
        ("risk_reasons", [["A"], [], ["A", "B"], [], ["B", "A"]]),  # lists alone
        ("risk_reasons", [[1], ["A"], [True], [1.0], []]),
        ("risk_reasons", [[{"a": 1}], ["A"]]),  # unhashable inside
        ("liquidatable", [True, False, True, 1, 0, None]),
        ("liquidatable", [True, False, True]),  # flags alone
        ("health_factor", [10**18, None, 0, 2**256 - 1, 7]),
        ("total_debt_base", [5, 6, 7]),
        ("liquidation_probability", [0.5, None, 1, 0.25]),
        ("risk_tier", ["SAFE", None, "WATCH"]),
        ("block_number", [1, 2, 3]),
    ],
)
def test_values_bind_as_the_columns_type_binds_them(name: str, values: list[Any]) -> None:
    ours = changes._bound(changes.T_LATEST.c[name], DIALECT, list(values))
    assert ours == _theirs(name, values)
    assert [type(v) for v in ours] == [type(v) for v in _theirs(name, values)]


@pytest.mark.parametrize("bad", [-1, 2**256, True, "7"])
def test_what_a_uint256_column_refuses_is_refused_the_same_way(bad: Any) -> None:
    column = changes.T_LATEST.c["total_debt_base"]
    with pytest.raises((TypeError, ValueError)) as theirs:
        _theirs("total_debt_base", [5, bad])
    with pytest.raises(type(theirs.value)):
        changes._bound(column, DIALECT, [5, bad])
