"""The vectorised TubeDETR protocol against a plain per-frame re-implementation, plus properties and counts."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from builders import box_query
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from stvg_plugin.data import GroundingPrediction, GroundingQuery, iter_predictions, write_jsonl
from stvg_plugin.metrics import evaluate, sanitize_box_array, score_query, tubedetr_universe
from stvg_plugin.util.box_ops import BoxRepairStats, sanitize_box

# ----------------------------------------------------------------------------- reference (TubeDETR's logic)


def ref_frame_ids(video_fps: float, start: int, end: int, fps: int = 5, max_len: int = 200) -> list[int]:
    sampling_rate = fps / video_fps
    frame_ids = [start]
    for frame_id in range(start, end):
        if int(frame_ids[-1] * sampling_rate) < int(frame_id * sampling_rate):
            frame_ids.append(frame_id)
    if len(frame_ids) > max_len:
        frame_ids = [frame_ids[(j * len(frame_ids)) // max_len] for j in range(max_len)]
    return frame_ids


def ref_iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def ref_score(q: GroundingQuery, p: GroundingPrediction) -> dict:
    """One video of TubeDETR's evaluator: GT dict on sampled frames, per-frame loop, strict thresholds."""
    seg = q.extra.get("segment", [0, q.num_frames])
    frame_ids = ref_frame_ids(q.fps, seg[0], seg[1])
    off = q.extra.get("tubedetr_frame_offset", 0)
    gt_sted = [q.span_frames[0] + off, q.span_frames[1] + off]
    img2box = {f: q.boxes[f - off] for f in frame_ids if gt_sted[0] <= f < gt_sted[1]}
    if p.span_frames is not None:
        pred_sted = list(p.span_frames)
    else:  # seconds -> first/last sampled frame inside [t0, t1]
        inside_s = [f for f in frame_ids if f / q.fps >= p.span_s[0] - 1e-9]
        inside_e = [f for f in frame_ids if f / q.fps <= p.span_s[1] + 1e-9]
        pred_sted = [inside_s[0], inside_e[-1] + 1] if inside_s and inside_e else [0, 0]
        if pred_sted[1] <= pred_sted[0]:
            pred_sted = [0, 0]
    max_start, min_end = max(gt_sted[0], pred_sted[0]), min(gt_sted[1], pred_sted[1])
    min_start, max_end = min(gt_sted[0], pred_sted[0]), max(gt_sted[1], pred_sted[1])
    if min_end <= max_start:
        tiou = 0.0
    else:
        inter = min_end - max_start
        tiou = inter / ((gt_sted[1] - gt_sted[0]) + (pred_sted[1] - pred_sted[0]) - inter)
    union_predgt = [f for f in frame_ids if min_start <= f < max_end]
    inter_predgt = {f for f in frame_ids if max_start <= f < min_end}
    viou = gt_viou = 0.0
    for f, gt_box in img2box.items():
        iou = ref_iou(p.boxes[f], gt_box)
        if f in inter_predgt:
            viou += iou
        gt_viou += iou
    viou /= max(len(union_predgt), 1)
    gt_viou /= max(len(img2box), 1)
    return {
        "tIoU": tiou,
        "vIoU": viou,
        "gt_vIoU": gt_viou,
        "vIoU@0.3": float(viou > 0.3),
        "vIoU@0.5": float(viou > 0.5),
    }


# ----------------------------------------------------------------------------- random benchmark


def random_case(rng: random.Random, i: int) -> tuple[GroundingQuery, GroundingPrediction]:
    kind = rng.choice(["hcstvg", "vidstg", "vidstg_long"])
    if kind == "hcstvg":
        n = rng.randint(100, 800)
        fps, seg, off = n / 20, [0, n - 1], 1
    else:
        fps = rng.choice([5.0, 6.5, 24.0, 25.0, 29.97, 30.0, 59.94])
        n = rng.randint(60, 3000 if kind == "vidstg_long" else 600)
        b = rng.randint(0, n // 3)
        seg, off = [b, rng.randint(b + 1, n)], 0
    gs = rng.randint(seg[0], max(seg[0], seg[1] - 2))
    ge = min(n - off, gs + rng.randint(1, max(1, (seg[1] - seg[0]) // 2 + 10)))  # may exceed the segment
    w, h = 640.0, 360.0

    def box():
        x, y = rng.uniform(0, w - 20), rng.uniform(0, h - 20)
        return [x, y, x + rng.uniform(5, 200), y + rng.uniform(5, 150)]

    gt_boxes = {f: box() for f in range(gs, ge)}
    q = GroundingQuery(
        qid=f"q{i}",
        video=f"v{i}.mp4",
        query="x",
        fps=fps,
        num_frames=n,
        width=int(w),
        height=int(h),
        span_frames=(gs, ge),
        boxes=gt_boxes,
        qtype=rng.choice(["declarative", "interrogative"]),
        extra={"segment": seg, "tubedetr_frame_offset": off},
    )
    pred_boxes = {}
    for f in ref_frame_ids(fps, *seg):  # TubeDETR predicts a box on every sampled frame
        g = gt_boxes.get(f - off)
        pred_boxes[f] = (
            [c + rng.uniform(-15, 15) for c in g[:2]] + [c + rng.uniform(-15, 15) for c in g[2:]] if g else box()
        )
        b = pred_boxes[f]
        pred_boxes[f] = [min(b[0], b[2] - 1), min(b[1], b[3] - 1), max(b[2], b[0] + 1), max(b[3], b[1] + 1)]
    shift = rng.randint(-(ge - gs), ge - gs)
    ps = max(0, gs + shift)
    pe = ps + rng.randint(1, max(1, 2 * (ge - gs)))
    if rng.random() < 0.3:
        p = GroundingPrediction(qid=q.qid, span_s=(ps / fps + rng.uniform(-0.1, 0.1), pe / fps), boxes=pred_boxes)
    else:
        p = GroundingPrediction(qid=q.qid, span_frames=(ps, pe), boxes=pred_boxes)
    return q, p


@pytest.fixture(scope="module")
def random_benchmark():
    rng = random.Random(1234)
    return [random_case(rng, i) for i in range(300)]


def test_universe_matches_reference_loop():
    rng = random.Random(7)
    cases = [
        (rng.choice([5.0, 7.3, 25.0, 29.97, 30.0, 59.94, 17.5]), rng.randint(0, 50), rng.randint(0, 3000))
        for _ in range(200)
    ]
    cases = [(f, s, max(s, e)) for f, s, e in cases] + [(30.0, 10, 10), (30.0, 10, 5)]
    qi, fr = tubedetr_universe(
        np.array([c[0] for c in cases]), np.array([c[1] for c in cases]), np.array([c[2] for c in cases])
    )
    for k, (fps, s, e) in enumerate(cases):
        assert fr[qi == k].tolist() == ref_frame_ids(fps, s, e), (fps, s, e)


def test_parity_with_reference_evaluator(random_benchmark):
    queries = [q for q, _ in random_benchmark]
    preds = [p for _, p in random_benchmark]
    res = evaluate(queries, preds)
    refs = [ref_score(q, p) for q, p in random_benchmark]
    for row, ref in zip(res.per_query, refs):
        for key, val in ref.items():
            assert row[key] == pytest.approx(val, abs=1e-9), (row["qid"], key)
    for key, skey in [("tIoU", "m_tIoU"), ("vIoU", "m_vIoU"), ("gt_vIoU", "gt_vIoU"), ("vIoU@0.5", "vIoU@0.5")]:
        assert res.summary[skey] == pytest.approx(sum(r[key] for r in refs) / len(refs), abs=1e-9)
    for qt in ("declarative", "interrogative"):
        sub = [r for r, q in zip(refs, queries) if q.qtype == qt]
        assert res.summary[f"{qt}_m_vIoU"] == pytest.approx(sum(r["vIoU"] for r in sub) / len(sub), abs=1e-9)
    assert res.summary["num_missing"] == 0 and res.summary["num_nan"] == 0
    assert 0 < res.summary["m_vIoU"] < res.summary["m_tIoU"]  # the random cases are not degenerate
    # score_query (used by lmms-eval / FiftyOne) gives the same per-query numbers
    for q, p in random_benchmark[:20]:
        one = score_query(q, p)
        row = res.per_query[queries.index(q)]
        assert {k: one[k] for k in ("tIoU", "vIoU", "gt_vIoU")} == {k: row[k] for k in ("tIoU", "vIoU", "gt_vIoU")}


def test_streamed_predictions_from_jsonl(random_benchmark, tmp_path):
    path = tmp_path / "preds.jsonl"
    write_jsonl(path, [p for _, p in random_benchmark[:50]])
    queries = [q for q, _ in random_benchmark[:50]]
    streamed = evaluate(queries, iter_predictions(path))
    direct = evaluate(queries, [p for _, p in random_benchmark[:50]])
    assert streamed.summary == direct.summary


def test_fill_modes_only_fill_inside_the_predicted_span():
    q = box_query("f", (10, 20), [0, 0, 10, 10], num_frames=100, extra={"segment": [0, 99]})
    p = GroundingPrediction(qid="f", span_frames=(10, 15), boxes={10: [0, 0, 10, 10], 14: [0, 0, 10, 20]})
    none = score_query(q, p)
    nearest = score_query(q, p, box_fill="nearest")
    linear = score_query(q, p, box_fill="linear")
    assert none["vIoU"] == pytest.approx(1.5 / 10)
    assert nearest["vIoU"] == pytest.approx((1 + 1 + 1 + 0.5 + 0.5) / 10)  # 11, 12 -> frame 10 (tie -> earlier)
    lin = [1.0, 10 / 12.5, 10 / 15, 10 / 17.5, 0.5]
    assert linear["vIoU"] == pytest.approx(sum(lin) / 10)
    assert linear["gt_vIoU"] == pytest.approx(sum(lin) / 10)  # no boxes invented outside [10, 15)


# ----------------------------------------------------------------------------- counts and robustness


def test_missing_unknown_duplicate_error_and_box_repairs_are_counted():
    qs = [
        GroundingQuery(
            qid=f"q{i}",
            video="v.mp4",
            query="x",
            fps=5.0,
            num_frames=50,
            span_frames=(10, 20),
            boxes={f: [0, 0, 10, 10] for f in range(10, 20)},
        )
        for i in range(3)
    ]
    boxes = {f: [0, 0, 10, 10] for f in range(10, 20)}
    boxes[11] = [10, 10, 0, 0]  # swapped -> repaired, IoU 1
    boxes[12] = [float("nan"), 0, 10, 10]  # rejected -> IoU 0
    boxes[13] = [5, 5, 5, 9]  # zero area -> rejected
    ps = [
        GroundingPrediction(qid="q0", span_frames=(10, 20), boxes=boxes),
        GroundingPrediction(qid="q0", span_frames=(0, 1)),  # duplicate: ignored
        GroundingPrediction(qid="ghost", span_frames=(10, 20)),
        {"qid": "q1", "span_frames": [10, 20], "error": "video could not be decoded", "parse_failed": True},
    ]
    res = evaluate(qs, iter(ps), repair=True)  # the project's box repairs are opt-in (issue 15)
    s = res.summary
    assert s["repair"] is True
    assert s["num_missing"] == 1 and s["num_unknown_qids"] == 1 and s["unknown_qids"] == ["ghost"]
    assert s["num_duplicate_predictions"] == 1 and s["num_errors"] == 1 and s["num_parse_failed"] == 1
    assert (s["boxes_swapped_corners"], s["boxes_rejected_nan"], s["boxes_rejected_empty"]) == (1, 1, 1)
    assert res.per_query[0]["vIoU"] == pytest.approx(8 / 10)
    assert res.per_query[2]["missing"] and res.per_query[2]["vIoU"] == 0.0
    assert s["m_vIoU"] == pytest.approx((0.8 + 0 + 0) / 3)
    assert "num_missing" in res.to_table() and "m_vIoU" in res.to_table()


def test_nan_gt_box_is_counted_never_reported():
    q = GroundingQuery(
        qid="n",
        video="v.mp4",
        query="x",
        fps=5.0,
        num_frames=50,
        span_frames=(10, 12),
        boxes={10: [float("nan"), 0, 10, 10], 11: [0, 0, 10, 10]},
    )
    p = GroundingPrediction(qid="n", span_frames=(10, 12), boxes={10: [0, 0, 10, 10], 11: [0, 0, 10, 10]})
    s = evaluate([q], [p]).summary
    assert s["num_nan"] == 1 and s["m_vIoU"] == pytest.approx(0.5)
    assert not any(isinstance(v, float) and math.isnan(v) for v in s.values())


def test_bad_inputs_raise_named_errors():
    from stvg_plugin.data import AnnotationError
    from stvg_plugin.metrics import MetricsError

    q = GroundingQuery(qid="z", video="v.mp4", query="x", fps=0.0, num_frames=50, span_frames=(1, 2))
    with pytest.raises(AnnotationError, match="qid z"):
        evaluate([q], [])
    with pytest.raises(MetricsError, match="unknown protocol"):
        evaluate([], [], protocol="nope")
    with pytest.raises(AnnotationError, match="duplicate qid"):
        evaluate([q, q], [])


def test_sanitize_box_array_matches_scalar_rule():
    rng = np.random.default_rng(0)
    boxes = rng.uniform(-5, 5, size=(400, 4))
    boxes[::17, 2] = boxes[::17, 0]  # zero width
    boxes[::23, 1] = np.nan
    boxes[::29, 3] = np.inf
    s_vec, s_ref = BoxRepairStats(), BoxRepairStats()
    clean, valid = sanitize_box_array(boxes, s_vec)
    for b, c, v in zip(boxes, clean, valid):
        ref = sanitize_box(b, s_ref)
        assert (ref is not None) == bool(v)
        if ref is not None:
            assert c.tolist() == ref
    assert s_vec.as_dict() == s_ref.as_dict()


def test_auto_protocol_with_mixed_tasks():
    stvg_q = box_query("s", (10, 20), [0, 0, 10, 10])
    tvg_q = GroundingQuery(qid="t", video="v.mp4", query="x", task="tvg", fps=5.0, num_frames=50, span_s=(2.0, 4.0))
    ps = [
        GroundingPrediction(qid="s", span_frames=(10, 20), boxes=dict(stvg_q.boxes)),
        GroundingPrediction(qid="t", span_s=(2.0, 3.0)),
    ]
    s = evaluate([stvg_q, tvg_q], ps, protocol="auto").summary
    assert s["tubedetr_m_vIoU"] == 1.0 and s["tvg_mIoU"] == 0.5


# ----------------------------------------------------------------------------- properties


@st.composite
def stvg_case(draw):
    fps = draw(st.sampled_from([5.0, 10.0, 24.0, 25.0, 29.97, 30.0]))
    n = draw(st.integers(20, 400))
    gs = draw(st.integers(0, n - 2))
    ge = draw(st.integers(gs + 1, n))
    ps = draw(st.integers(0, n - 1))
    pe = draw(st.integers(ps, n + 20))
    coords = st.floats(0, 500, allow_nan=False)
    x, y, w, h = draw(coords), draw(coords), draw(st.floats(1, 300)), draw(st.floats(1, 300))
    dx = draw(st.floats(-100, 100))
    q = GroundingQuery(
        qid="h",
        video="v.mp4",
        query="x",
        fps=fps,
        num_frames=n,
        span_frames=(gs, ge),
        boxes={f: [x, y, x + w, y + h] for f in range(gs, ge)},
    )
    p = GroundingPrediction(qid="h", span_frames=(ps, pe), boxes={f: [x + dx, y, x + dx + w, y + h] for f in range(n)})
    return q, p


@settings(max_examples=60, deadline=None)
@given(stvg_case())
def test_scores_are_bounded_and_tiou_symmetric(case):
    q, p = case
    row = score_query(q, p)
    for key in ("tIoU", "vIoU", "gt_vIoU"):
        assert 0.0 <= row[key] <= 1.0
    swapped_q = GroundingQuery(
        qid="h", video="v.mp4", query="x", fps=q.fps, num_frames=q.num_frames, span_frames=p.span_frames, boxes={}
    )
    swapped_p = GroundingPrediction(qid="h", span_frames=q.span_frames)
    assert score_query(swapped_q, swapped_p)["tIoU"] == pytest.approx(row["tIoU"], abs=1e-15)


@settings(max_examples=40, deadline=None)
@given(stvg_case())
def test_perfect_prediction_scores_one(case):
    q, _ = case
    _, fr = tubedetr_universe(np.array([q.fps]), np.array([0]), np.array([q.num_frames]))
    assume(any(q.span_frames[0] <= f < q.span_frames[1] for f in fr))
    row = score_query(q, GroundingPrediction(qid="h", span_frames=q.span_frames, boxes=dict(q.boxes)))
    assert (row["tIoU"], row["vIoU"], row["gt_vIoU"]) == (1.0, 1.0, 1.0)


@settings(max_examples=10, deadline=None)
@given(st.randoms(use_true_random=False))
def test_order_invariance(rnd):
    cases = [random_case(random.Random(k), k) for k in range(12)]
    base = evaluate([q for q, _ in cases], [p for _, p in cases])
    qs, ps = [q for q, _ in cases], [p for _, p in cases]
    rnd.shuffle(qs)
    rnd.shuffle(ps)
    shuffled = evaluate(qs, ps)
    assert shuffled.summary == base.summary
    by_qid = {r["qid"]: r for r in shuffled.per_query}
    assert all(by_qid[r["qid"]] == r for r in base.per_query)
