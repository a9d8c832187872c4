"""The per-query row layout of ``evaluate``, shared by the engine and the scorers that build whole rows.

A row is ``{"qid", "qtype", "task", "protocol", <the protocol's metrics>, "missing", "parse_failed",
"error"}``. The STVG scorer builds it in one go (one dict per query instead of two, a visible share
of the time on large benchmarks); the engine completes the other protocols' metric dicts.
"""

from __future__ import annotations

from typing import Any

from stvg_plugin.data import GroundingPrediction

_MISSING = {"missing": True, "parse_failed": False, "error": None}  # only ever copied into rows
_SCORED = {"missing": False, "parse_failed": False, "error": None}


def row_tail(p: GroundingPrediction | None, no_pair: bool = False) -> dict[str, Any]:
    """The row's last keys; ``no_pair``: the scorer found no answer to score in ``p``. Copy, never mutate."""
    if p is None:
        return _MISSING
    if p.parse_failed or no_pair or p.error is not None:
        return {"missing": False, "parse_failed": bool(p.parse_failed or no_pair), "error": p.error}
    return _SCORED
