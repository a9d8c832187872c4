"""The project's conventions, each with one home (issue 17): boxes and IoU in ``util/box_ops.py``,
seconds <-> frames and JSON Lines in ``data.py``. These pin each convention down (the +-0 / NaN
behaviour the official-evaluator reproductions rely on included), so every caller gets the same numbers.
"""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import torch

from stvg_plugin.data import (
    AnnotationError,
    Span,
    append_jsonl,
    decode_json_line,
    frame_seconds,
    frames_to_seconds,
    iter_jsonl,
    jsonl_line,
    seconds_to_frame_spans,
    seconds_to_span,
)
from stvg_plugin.util import box_ops

_SPECIAL = np.array([0.0, -0.0, np.nan, np.inf, -np.inf, 1e300, -1.5, 3.0, 7.25])
_EPS64 = np.finfo(np.float64).eps


def _random_boxes(rng: np.random.Generator, n: int, special: bool = True) -> np.ndarray:
    """xyxy boxes; about 10 % of coordinates are special values (signed zeros, NaN, inf, huge)."""
    boxes = rng.uniform(-5, 100, size=(n, 4))
    boxes[:, 2:] += boxes[:, :2] * rng.uniform(0, 1, size=(n, 2))  # mostly ordered, some swapped
    if special:
        hit = rng.random((n, 4)) < 0.1
        boxes[hit] = rng.choice(_SPECIAL, size=int(hit.sum()))
    return boxes


def _plain_iou(a: np.ndarray, b: np.ndarray, eps: float = 0.0) -> np.ndarray:
    """The textbook formula, written the obvious way (TubeDETR's ``np_box_iou`` on matched rows)."""
    with np.errstate(all="ignore"):
        iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
        ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
        inter = iw * ih
        area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
        area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
        return inter / (area_a + area_b - inter + eps)


def _same_bits(x: np.ndarray, y: np.ndarray) -> bool:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return x.shape == y.shape and bool(np.all((x.view(np.int64) == y.view(np.int64)) | (np.isnan(x) & np.isnan(y))))


# --------------------------------------------------------------------------- 2-D boxes


@pytest.mark.parametrize("eps", [0.0, 1e-9])
def test_pairwise_iou_is_the_plain_formula_bit_for_bit(eps):
    rng = np.random.default_rng(0)
    a, b = _random_boxes(rng, 5000), _random_boxes(rng, 5000)
    assert _same_bits(box_ops.pairwise_iou(a, b, eps=eps), _plain_iou(a, b, eps))
    # the inputs are not touched by the in-place arithmetic
    a_copy = a.copy()
    box_ops.pairwise_iou(a, b)
    assert _same_bits(a, a_copy)


def test_pairwise_iou_shapes():
    rng = np.random.default_rng(1)
    a = _random_boxes(rng, 6, special=False).reshape(2, 3, 4)
    b = _random_boxes(rng, 3, special=False)
    out = box_ops.pairwise_iou(a, b)  # broadcast (2, 3, 4) against (3, 4)
    assert out.shape == (2, 3)
    assert _same_bits(out, _plain_iou(a, np.broadcast_to(b, a.shape)))
    single = box_ops.pairwise_iou(a[0, 0], b[0])
    assert single.shape == ()
    assert box_ops.box_iou([0, 0, 2, 2], [1, 1, 3, 3]) == 1 / 7
    assert math.isnan(box_ops.box_iou([0, 0, 0, 0], [0, 0, 0, 0]))  # no zero-union guard, as the references


def test_reference_box_iou_is_lmms_eval_and_vstar_arithmetic():
    rng = np.random.default_rng(2)
    for gt, pred in zip(_random_boxes(rng, 3000).tolist(), _random_boxes(rng, 3000).tolist()):
        iw = max(0.0, min(gt[2], pred[2]) - max(gt[0], pred[0]))
        ih = max(0.0, min(gt[3], pred[3]) - max(gt[1], pred[1]))
        inter = iw * ih
        union = (gt[2] - gt[0]) * (gt[3] - gt[1]) + (pred[2] - pred[0]) * (pred[3] - pred[1]) - inter
        expected = inter / union if union > 0 else None
        got = box_ops.reference_box_iou(gt, pred)
        if expected is None:
            assert got is None
        else:
            assert got == expected and math.copysign(1, got) == math.copysign(1, expected)
    assert box_ops.reference_box_iou([0, 0, 0, 0], [0, 0, 0, 0]) is None  # each caller scores a 0 union itself
    assert box_ops.reference_box_iou([0, 0, 2, 2], [0, 0, 2, 2]) == 1.0
    with pytest.raises(ValueError):  # V-STaR unpacks exactly four values
        box_ops.reference_box_iou([0, 0, 2, 2, 9], [0, 0, 2, 2])


def test_box_format_round_trips():
    rng = np.random.default_rng(3)
    xyxy = _random_boxes(rng, 1000, special=False)
    tol = 8 * _EPS64 * np.abs(xyxy).max()  # a few roundings at the boxes' magnitude
    np.testing.assert_allclose(box_ops.cxcywh_to_xyxy(box_ops.xyxy_to_cxcywh(xyxy)), xyxy, rtol=0, atol=tol)
    np.testing.assert_allclose(box_ops.xywh_to_xyxy(box_ops.xyxy_to_xywh(xyxy)), xyxy, rtol=0, atol=tol)
    np.testing.assert_allclose(box_ops.scale_boxes(box_ops.normalize_boxes(xyxy, 640, 360), 640, 360), xyxy,
                               rtol=0, atol=tol)
    exact = np.array([[1.0, 2.0, 5.0, 10.0]])  # dyadic values: every step is exact
    assert box_ops.xyxy_to_cxcywh(exact).tolist() == [[3.0, 6.0, 4.0, 8.0]]
    assert box_ops.xyxy_to_xywh(exact).tolist() == [[1.0, 2.0, 4.0, 8.0]]
    assert box_ops.normalize_boxes(exact, 2, 4).tolist() == [[0.5, 0.5, 2.5, 2.5]]
    assert box_ops.box_area(exact).tolist() == [32.0]


def test_normalize_clip_keeps_python_min_max_semantics():
    """``clip`` must equal ``min(max(v / w, 0.0), 1.0)`` (the training text targets), sign of zero and NaN included."""
    values = [-0.0, 0.0, math.nan, -3.0, 250.0, 50.0, math.inf, -math.inf]
    for v in values:
        box = [v, v, v, v]
        got = box_ops.normalize_boxes(box, 100, 100, clip=True).tolist()
        want = [min(max(x / 100, 0.0), 1.0) for x in box]
        for g, w in zip(got, want):
            assert (math.isnan(g) and math.isnan(w)) or (g == w and math.copysign(1, g) == math.copysign(1, w)), v


def test_torch_variants_agree_with_numpy():
    rng = np.random.default_rng(4)
    cxcywh = np.abs(_random_boxes(rng, 500, special=False))
    got = box_ops.torch_cxcywh_to_xyxy(torch.from_numpy(cxcywh)).numpy()
    assert _same_bits(got, box_ops.cxcywh_to_xyxy(cxcywh))
    a = box_ops.cxcywh_to_xyxy(cxcywh[:250])
    b = box_ops.cxcywh_to_xyxy(cxcywh[250:])
    giou = box_ops.torch_generalized_iou(torch.from_numpy(a), torch.from_numpy(b), eps=0.0).numpy()
    # with proper boxes (positive areas, so the loss's clamp is a no-op) and no eps, the same float64 steps
    iou = box_ops.pairwise_iou(a, b)
    hull = (np.maximum(a[:, 2], b[:, 2]) - np.minimum(a[:, 0], b[:, 0])) * (
        np.maximum(a[:, 3], b[:, 3]) - np.minimum(a[:, 1], b[:, 1]))
    iw = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    union = box_ops.box_area(a) + box_ops.box_area(b) - iw * ih
    assert _same_bits(giou, iou - (hull - union) / hull)
    same = torch.tensor([[0.1, 0.2, 0.5, 0.9]], dtype=torch.float64)
    assert box_ops.torch_generalized_iou(same, same).item() == pytest.approx(1.0, abs=1e-6)
    far = torch.tensor([[2.0, 2.0, 3.0, 3.0]], dtype=torch.float64)
    # disjoint unit boxes whose hull is 3 x 3: IoU 0, GIoU = -(9 - 2) / 9
    assert box_ops.torch_generalized_iou(torch.tensor([[0.0, 0.0, 1.0, 1.0]], dtype=torch.float64), far).item() \
        == pytest.approx(-7 / 9, abs=1e-6)


# --------------------------------------------------------------------------- temporal IoU


def test_interval_iou_conventions():
    assert box_ops.interval_iou((2, 6), (4, 8)) == 2 / 6
    assert box_ops.interval_iou((2, 6), (7, 8)) == 0.0
    assert box_ops.interval_iou((2, 2), (2, 2)) == 0.0  # empty union
    # V-STaR's GT-first min/max: a NaN start of the answer is passed over by max(gs, ps) / min(gs, ps)
    assert box_ops.interval_iou((2, 6), (math.nan, 8), nan_scores_zero=True) == 4 / 6
    # the two evaluators differ only on NaN: Charades lets it through, V-STaR scores 0
    assert math.isnan(box_ops.interval_iou((math.nan, 6), (4, 8)))
    assert box_ops.interval_iou((math.nan, 6), (4, 8), nan_scores_zero=True) == 0.0
    rng = np.random.default_rng(5)
    spans = rng.integers(-5, 40, size=(2000, 4))
    gs, ge, ps, pe = (spans[:, i] for i in range(4))
    array = box_ops.interval_iou_array(gs, ge, ps, pe)
    for g0, g1, p0, p1, v in zip(gs.tolist(), ge.tolist(), ps.tolist(), pe.tolist(), array.tolist()):
        if g1 > g0 and p1 > p0:  # proper spans: the scalar rules give the array's value
            assert v == box_ops.interval_iou((g0, g1), (p0, p1)) == box_ops.interval_iou(
                (g0, g1), (p0, p1), nan_scores_zero=True)
        else:
            assert v >= 0.0


# --------------------------------------------------------------------------- seconds <-> frames


def test_frames_to_seconds_is_one_rule():
    assert frames_to_seconds(3, 9, 3.0) == (1.0, 3.0)
    assert frames_to_seconds(9, 3, 3.0) == (3.0, 1.0)  # a reversed span stays reversed
    assert Span(3, 9).to_seconds(29.97) == (3 / 29.97, 9 / 29.97)
    assert frame_seconds(7, 30.0) == 7 / 30.0


def test_seconds_to_frame_spans_is_seconds_to_span_on_arrays():
    rng = np.random.default_rng(6)
    fps = rng.choice([5.0, 10.0, 25.0, 29.97, 30.0], size=3000)
    t0 = rng.integers(0, 200, size=3000) / fps + rng.choice([0.0, 1e-12, -1e-12, 0.013], size=3000)
    t1 = t0 + rng.uniform(0, 5, size=3000)
    t0[:50] -= 3.0  # negative starts clip at frame 0
    start, end = seconds_to_frame_spans(fps, t0, t1)
    for f, a, b, s, e in zip(fps.tolist(), t0.tolist(), t1.tolist(), start.tolist(), end.tolist()):
        span = seconds_to_span(a, b, f)
        assert (span.start, span.end) == (s, e)
    big_start, big_end = seconds_to_frame_spans(np.array([10.0]), np.array([-1e300]), np.array([1e300]))
    assert big_start.tolist() == [0] and big_end.tolist() == [2**62 + 1]  # clipped, never wrapped around


# --------------------------------------------------------------------------- JSON Lines


def test_decode_json_line_names_the_problem_without_a_location():
    assert decode_json_line('{"a": 1}') == {"a": 1}
    with pytest.raises(AnnotationError, match=r"^invalid JSON \(Expecting"):
        decode_json_line('{"a": ')
    with pytest.raises(AnnotationError, match=r"^JSON nested too deeply$"):
        decode_json_line("[" * 100_000 + "]" * 100_000)
    with pytest.raises(AnnotationError, match=r"^invalid JSON \("):
        decode_json_line('{"a": ' + "1" * 5000 + "}")


def test_jsonl_lines_written_and_read_back(tmp_path):
    fh = io.StringIO()
    append_jsonl(fh, {"qid": "é", "x": 1.5})
    append_jsonl(fh, {"qid": "b"})
    assert fh.getvalue() == '{"qid": "é", "x": 1.5}\n{"qid": "b"}\n'  # UTF-8 kept, one object a line
    assert jsonl_line([1, 2]) == "[1, 2]\n"
    path = tmp_path / "a.jsonl"
    path.write_text(fh.getvalue() + '{"broken": \n', encoding="utf-8")
    rows = []
    with pytest.raises(AnnotationError, match=r"a\.jsonl \[entry line 3\]: invalid JSON"):
        for lineno, obj in iter_jsonl(path):
            rows.append((lineno, obj))
    assert rows == [(1, json.loads('{"qid": "é", "x": 1.5}')), (2, {"qid": "b"})]
