"""Robustness of the metric engine: extreme but finite predictions (no warnings, sane numbers), and
its fast paths (block-wise box reading, marshal decoding, bin tables) against plain reference code."""

from __future__ import annotations

import math
import random
import types
import warnings

import numpy as np
import pytest

from stvg_plugin.data import GroundingPrediction, GroundingQuery
from stvg_plugin.metrics import boxes as box_module
from stvg_plugin.metrics import frames, score_query
from stvg_plugin.metrics.stvg import _int_pairs
from stvg_plugin.util.box_ops import BoxRepairStats, sanitize_box

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
    # entirely after / before the video; eval_hcvg (official_hcstvg) scores the predicted boxes on the GT
    # frames whatever the predicted span says (HC-STVG eval_hcvg.py: `for frame_id in gt_v['bbox']`)
    if (span_s[0] >= 1e300 or span_s[1] <= -1e300) and protocol != "official_hcstvg":
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


# ----------------------------------------------------------------------------- fast paths of the engine


def _ref_frame_ids(video_fps: float, start: int, end: int) -> list[int]:
    """TubeDETR's sampling loop (5 fps, at most 200 frames), as in tests/test_metrics_parity.py."""
    rate, ids = 5 / video_fps, [start]
    for f in range(start, end):
        if int(ids[-1] * rate) < int(f * rate):
            ids.append(f)
    return [ids[(j * len(ids)) // 200] for j in range(200)] if len(ids) > 200 else ids


@pytest.mark.parametrize("solver", ["table", "per_row"])
def test_sampled_universe_both_bin_solvers_match_the_reference(solver: str, monkeypatch) -> None:
    """Bins are solved per (rate, bin) in a table when that is smaller than the rows, else per row."""
    if solver == "per_row":
        monkeypatch.setattr(frames.SampledUniverse, "_bin_table_lookup", lambda self, *a: None)
    rng = random.Random(3)
    cases = []
    for _ in range(150):
        fps = rng.choice([2.0, 5.0, 7.3, 25.0, 29.97, 30.0, 59.94, 1000.0])
        start = rng.choice([0, rng.randint(0, 50), rng.randint(10**6, 10**6 + 100)])
        cases.append((fps, start, start + rng.randint(0, 2500)))
    fps, seg_start, seg_end = (np.array(c) for c in zip(*cases))
    qi, fr = frames.tubedetr_universe(fps, seg_start, seg_end)
    for k, case in enumerate(cases):
        assert fr[qi == k].tolist() == _ref_frame_ids(*case), case
    universe = frames.SampledUniverse(fps, seg_start, seg_end)  # a sub-range of every query, via rows_in
    lo = seg_start + (seg_end - seg_start) // 3
    hi = seg_end - (seg_end - seg_start) // 4
    qi, fr = universe.rows_in(lo, hi, np.ones(len(cases), dtype=bool))
    for k, case in enumerate(cases):
        assert fr[qi == k].tolist() == [f for f in _ref_frame_ids(*case) if lo[k] <= f < hi[k]], case


def test_gather_boxes_matches_the_scalar_rule_on_every_box_shape(monkeypatch) -> None:
    """Block-wise lookups + marshal fast path + fallbacks == a per-row dict.get and ``sanitize_box``."""
    monkeypatch.setattr(box_module, "_CHUNK_ROWS", 7)  # many blocks, misses starting mid-way
    rng = random.Random(5)
    nan = float("nan")

    def box():
        x, y = rng.uniform(0, 50), rng.uniform(0, 50)
        kind = rng.random()
        b = [x, y, x + rng.uniform(-5, 30), y + rng.uniform(-5, 30)]  # some swapped
        if kind < 0.05:
            return (nan, 1.0, 2.0, 3.0) if rng.random() < 0.5 else (np.nan,) * 4  # like the "no box" sentinel
        if kind < 0.08:
            return b[:3] if rng.random() < 0.5 else b + [1.0]  # 3 or 5 numbers: rejected, nothing shifts
        if kind < 0.11:
            return [x, y, x, y + 1]  # empty
        if kind < 0.14:
            return [math.inf, 0, 1, 1]
        if kind < 0.17:
            return [round(c) for c in b]  # ints
        if kind < 0.2:
            return np.array(b)
        if kind < 0.23:
            return None
        return tuple(b) if kind < 0.4 else b

    def source(plain: bool):
        dicts = []
        for q in range(40):
            d = {f: box() for f in range(0, 60) if rng.random() < 0.9}
            if not plain and q % 3 == 0:
                d = types.MappingProxyType(d)
            dicts.append(None if q % 11 == 0 else d)
        return dicts

    qidx = np.repeat(np.arange(40), 12)
    frames = np.concatenate([np.sort(rng.sample(range(62), 12)) for _ in range(40)])  # 60, 61: never present
    shift = np.array([rng.randint(-1, 1) for _ in range(40)])
    for plain in (True, False):
        gt, pred = source(plain), source(plain)
        stats = BoxRepairStats()
        (gbox, gfound), (pbox, pfound) = box_module.gather_boxes_many(
            [(gt, shift, False), (pred, None, True)], qidx, frames, stats=stats
        )
        ref_stats = BoxRepairStats()
        for row, (q, f) in enumerate(zip(qidx.tolist(), frames.tolist())):
            has_g = bool(gt[q]) and f - shift[q] in gt[q]  # a None value is a (malformed) box too
            assert gfound[row] == has_g
            g = gt[q][f - shift[q]] if has_g else None
            if g is not None and len(g) == 4:
                np.testing.assert_array_equal(gbox[row], np.asarray(g, dtype=np.float64))
            has_p = bool(pred[q]) and f in pred[q]
            clean = sanitize_box(pred[q][f], ref_stats) if has_p else None
            assert pfound[row] == (clean is not None), row
            if clean is not None:
                assert pbox[row].tolist() == clean
        assert stats.as_dict() == ref_stats.as_dict()


def test_int_pairs_reads_like_int() -> None:
    assert _int_pairs([(1, 2), [3, -4]]).tolist() == [[1, 2], [3, -4]]  # marshal fast path
    assert _int_pairs([(2**40, 2), (0, 1)]).tolist() == [[2**40, 2], [0, 1]]  # beyond int32
    assert _int_pairs([(1.7, -2.7), (np.int64(3), True)]).tolist() == [[1, -2], [3, 1]]  # int() semantics
    assert _int_pairs([(1, 2), None]) is None
    assert _int_pairs([(1, 2, 3)]) is None
    assert _int_pairs([(float("nan"), 1)]) is None and _int_pairs([(2**70, 1)]) is None
    assert _int_pairs([np.array([1, 2]), (3, 4)]).tolist() == [[1, 2], [3, 4]]


def test_vue_stg_scores_a_prediction_without_boxes_as_an_empty_tube() -> None:
    from stvg_plugin.metrics import evaluate

    q = _query()
    for boxes in (None, {}):
        pred = GroundingPrediction(qid="q", span_s=(1.0, 3.0), boxes=boxes)
        row = evaluate([q], [pred], protocol="vue_stg").per_query[0]
        same = evaluate([q], [GroundingPrediction(qid="q", span_s=(1.0, 3.0), boxes={})], protocol="vue_stg")
        assert row == same.per_query[0]
