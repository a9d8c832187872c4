"""Builders for metric tests: most hand-written cases are "one constant ground-truth box over the
span", and spelling that out field by field in every test hid what each case changes."""

from __future__ import annotations

from collections.abc import Sequence

from stvg_plugin.data import GroundingQuery


def box_query(
    qid: str, span_frames: tuple[int, int], box: Sequence[float], *, fps: float = 5.0, num_frames: int = 50, **fields
) -> GroundingQuery:
    """A query whose ground truth is ``box`` on every frame of ``span_frames`` (end exclusive)."""
    fields.setdefault("video", "v.mp4")
    fields.setdefault("query", "x")
    boxes = {f: list(box) for f in range(*span_frames)}
    return GroundingQuery(qid=qid, fps=fps, num_frames=num_frames, span_frames=span_frames, boxes=boxes, **fields)
