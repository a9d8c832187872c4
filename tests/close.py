"""Comparing model outputs from two separate runs.

Two runs of the same model on the same inputs agree bit for bit on most CPUs, but not on all: the CI
machine's BLAS kernels round a few results differently between runs (1e-8 in a confidence). Tests
that check the *plumbing* (what a wrapper writes equals what the core predicted) compare floats with
this tolerance and everything else (spans, frame keys, texts, statuses) exactly.
"""

from __future__ import annotations

import math
from typing import Any

REL = 1e-6
ABS = 1e-6


def assert_close(a: Any, b: Any, where: str = "") -> None:
    """Recursive equality of JSON-like values, floats within ``REL``/``ABS``; names the first difference."""
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        assert a == b, f"{where or 'value'}: {a!r} != {b!r}"
    elif isinstance(a, float) or isinstance(b, float):
        assert isinstance(a, (int, float)) and isinstance(b, (int, float)), f"{where}: {a!r} != {b!r}"
        assert math.isclose(a, b, rel_tol=REL, abs_tol=ABS), f"{where or 'value'}: {a!r} != {b!r}"
    elif isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), f"{where or 'dict'}: keys {sorted(map(str, a))} != {sorted(map(str, b))}"
        for k in a:
            assert_close(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        assert len(a) == len(b), f"{where or 'sequence'}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_close(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where or 'value'}: {a!r} != {b!r}"

