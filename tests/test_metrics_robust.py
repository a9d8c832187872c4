"""Robustness of the metric engine to extreme but finite predictions (no warnings, sane numbers)."""

from __future__ import annotations

import warnings

import pytest

from stvg_plugin.data import GroundingPrediction, GroundingQuery
from stvg_plugin.metrics import score_query

GT_BOX = [0.0, 0.0, 10.0, 10.0]
STVG_PROTOCOLS = ("tubedetr", "official_hcstvg", "stcat", "cg_stvg", "llava_next_stvg")
HUGE_SPANS = [
    (-1e300, 1e300),
    (1.0, 1e300),
    (-1e300, 2.0),
    (1e300, 1e300),
    (-1e300, -1e300),
    (-1.7e308, 1.7e308),  # t * fps overflows to +-inf before the clip
]


def _query() -> GroundingQuery:
    return GroundingQuery(qid="q", video="q.mp4", query="x", fps=10.0, num_frames=100, width=64, height=48,
                          span_frames=(10, 30), boxes={f: list(GT_BOX) for f in range(10, 30)})  # fmt: skip


def _boxes() -> dict[int, list[float]]:
    return {f: list(GT_BOX) for f in range(100)}


@pytest.mark.parametrize("protocol", STVG_PROTOCOLS)
@pytest.mark.parametrize("span_s", HUGE_SPANS)
def test_huge_or_negative_span_s_scores_sanely_without_warnings(protocol: str, span_s: tuple[float, float]) -> None:
    pred = GroundingPrediction(qid="q", span_s=span_s, boxes=_boxes())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a RuntimeWarning from an int64 cast fails the test
        row = score_query(_query(), pred, protocol=protocol)
    for key in ("tIoU", "vIoU", "gt_vIoU"):
        assert 0.0 <= row[key] <= 1.0, (key, row[key])
    p0, p1 = row["pred_span"]
    assert 0 <= p0 <= p1 <= 2**62 + 2  # never wrapped around to a negative int64
    if span_s[0] >= 1e300 or span_s[1] <= -1e300:  # entirely after / before the video
        assert row["tIoU"] == 0.0 and row["vIoU"] == 0.0


@pytest.mark.parametrize("protocol", [p for p in STVG_PROTOCOLS if p != "tubedetr"])  # raw-frame-axis protocols
def test_clipping_leaves_sane_spans_unchanged(protocol: str) -> None:
    q = _query()
    by_seconds = score_query(q, GroundingPrediction(qid="q", span_s=(1.0, 2.95), boxes=_boxes()), protocol=protocol)
    # 1.0 s -> frame 10; 2.95 s -> last frame 29 (end-exclusive 30): the GT span exactly
    assert by_seconds["pred_span"] == [10, 30]
    by_frames = score_query(q, GroundingPrediction(qid="q", span_frames=(10, 30), boxes=_boxes()), protocol=protocol)
    for key in ("tIoU", "vIoU", "gt_vIoU"):
        assert by_seconds[key] == pytest.approx(by_frames[key], abs=1e-12), key
