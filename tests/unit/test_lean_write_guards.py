"""What the lean write relies on and checks: a book has one row per position key, and the
amounts it binds are Python ints whatever sequence the exact figures came in."""

from __future__ import annotations

import numpy as np
import pytest

from onchain.store import changes


def test_the_key_order_is_kept_while_the_keys_stay_and_a_repeated_key_is_refused() -> None:
    standing = changes.Standing()
    keys = [(3, "m"), (1, "m"), (2, "b"), (2, "a")]
    assert standing.in_key_order(keys) == [1, 3, 2, 0]
    assert standing.in_key_order(list(keys)) is standing.in_key_order(keys)  # kept
    assert standing.in_key_order([(1, "m"), (0, "m")]) == [1, 0]  # other keys: sorted again
    with pytest.raises(ValueError, match=r"two positions of the book have the key \(2, 'a'\)"):
        standing.in_key_order([(2, "a"), (1, "m"), (2, "a")])


def test_amounts_are_bound_as_python_ints() -> None:
    ints = [1, 2**255, 0]
    assert changes._ints(ints) is ints
    for other in (np.array([1, 2, 3], dtype=np.int64), [np.int64(5), 6], (7, 8)):
        out = changes._ints(other)
        assert out == [int(x) for x in other] and {type(x) for x in out} == {int}


def test_only_a_blocks_number_time_and_hash_are_written_into_the_statement() -> None:
    """The block's own columns go into the update's SQL text once (SQLite); anything that is
    not a SQLite integer or a hex hash is bound instead."""
    assert changes._sql_literal(19_000_000) == "19000000"
    assert changes._sql_literal("0x" + "ab" * 32) == "'0x" + "ab" * 32 + "'"
    for bound in (2**63, -(2**63) - 1, True, 1.5, "0x12'; DROP TABLE x; --", "12", "0x", None):
        assert changes._sql_literal(bound) is None, bound
