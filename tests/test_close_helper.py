"""The tolerance helper used where two runs of a model are compared."""

from __future__ import annotations

import pytest
from close import assert_close


def test_assert_close_tolerates_rounding_and_nothing_else() -> None:
    assert_close({"c": 0.5012435980574509, "s": [64, 75]}, {"c": 0.5012435887442828, "s": [64, 75]})
    with pytest.raises(AssertionError, match=r"\['s'\]\[1\]"):
        assert_close({"s": [64, 75]}, {"s": [64, 76]})
    with pytest.raises(AssertionError):
        assert_close({"c": 0.50}, {"c": 0.51})
    with pytest.raises(AssertionError):
        assert_close({"t": "a"}, {"t": "b"})
