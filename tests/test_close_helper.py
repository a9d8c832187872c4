"""The tolerance helpers used where two computations of a model output are compared (tests/close.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from close import (
    ROUNDING_ULPS,
    assert_close,
    assert_same_prediction,
    assert_tensors_close,
    iou_ulps,
    isclose,
    rounding_tol,
    smallest_side,
    tensors_close,
)

from stvg_plugin.data import GroundingPrediction


def _steps(x: float, n: int, dtype=np.float32) -> float:
    """``x`` moved by ``n`` rounding steps of ``dtype`` (an exact representable neighbour, as float)."""
    v = np.asarray(x, dtype=dtype)
    for _ in range(abs(n)):
        v = np.nextafter(v, np.asarray(np.inf if n > 0 else -np.inf, dtype=dtype))
    return float(v)


def test_tolerance_is_the_dtype_resolution_times_ulps() -> None:
    assert rounding_tol(np.float32) == ROUNDING_ULPS * 2.0**-23
    assert rounding_tol(torch.float32) == rounding_tol(np.float32)
    assert rounding_tol(np.float64, ulps=1) == 2.0**-52
    assert rounding_tol(torch.bfloat16, ulps=1) == 2.0**-7


def test_float32_steps_pass_up_to_the_budget_and_not_beyond() -> None:
    # the case: a box corner ~40 px, one float32 step apart (3.8e-6 > the old 1e-6 tolerance)
    assert isclose(39.842543601989746, 39.84254837036133, scale=160)
    for x in (0.37, 39.84, 119.9):
        x = float(np.float32(x))
        assert isclose(x, _steps(x, ROUNDING_ULPS // 2)) and isclose(x, _steps(x, -ROUNDING_ULPS // 2))
        assert not isclose(x, _steps(x, 8 * ROUNDING_ULPS))  # (below 1 a step is finer than eps: 8x)
    # near 0 the scale decides: a corner at 0.01 px of a 160 px frame is compared at 160 px resolution
    assert isclose(0.01, 0.01 + 10 * 2.0**-23 * 160, scale=160)  # 10 steps of float32 at 160 px
    assert not isclose(0.01, 0.01 + 10 * 2.0**-23 * 160)  # ... which the default scale (1) rejects
    assert not isclose(0.01, 0.02, scale=160)
    # float64 values (metrics on the same inputs) get float64 resolution: 1e-9 is far beyond it
    assert isclose(0.5, 0.5 + 2.0**-50, dtype=np.float64)
    assert not isclose(0.5, 0.5 + 1e-9, dtype=np.float64)


def test_assert_close_tolerates_rounding_and_nothing_else() -> None:
    assert_close({"c": 0.5012435980574509, "s": [64, 75]}, {"c": 0.5012435887442828, "s": [64, 75]})
    with pytest.raises(AssertionError, match=r"\['s'\]\[1\]"):
        assert_close({"s": [64, 75]}, {"s": [64, 76]})
    with pytest.raises(AssertionError):
        assert_close({"c": 0.50}, {"c": 0.5001})
    with pytest.raises(AssertionError):
        assert_close({"t": "a"}, {"t": "b"})
    with pytest.raises(AssertionError):
        assert_close({"c": None}, {"c": 0.0})
    # pixel boxes: a box at scale 160 px tolerates 0.0002 px, not 0.01 px
    assert_close([10.0, 0.0, 40.0, 30.0], [10.0002, 0.0002, 40.0, 30.0], scale=160)
    with pytest.raises(AssertionError, match="rounding steps"):
        assert_close([10.0, 0.0, 40.0, 30.0], [10.01, 0.0, 40.0, 30.0], scale=160)


def test_tensors_use_their_own_dtype_and_magnitude() -> None:
    a = torch.tensor([0.25, 40.0, -3.0])
    b = torch.tensor([_steps(0.25, 3), _steps(40.0, -5), -3.0])
    assert tensors_close(a, b)
    assert_tensors_close(a, b)
    assert not tensors_close(a, a + torch.tensor([0.0, 0.01, 0.0]))
    with pytest.raises(AssertionError, match="rounding steps of float32"):
        assert_tensors_close(a, a + 1e-3, "boxes")
    # bfloat16 has 8 bits of mantissa: a difference float32 would reject is bfloat16 rounding
    h = torch.tensor([1.0, 2.0], dtype=torch.bfloat16)
    assert tensors_close(h, h + torch.tensor([2.0**-7, 0.0], dtype=torch.bfloat16))
    assert not tensors_close(h.float(), h.float() + torch.tensor([2.0**-7, 0.0]))


def test_same_prediction_is_exact_except_pixel_boxes() -> None:
    a = GroundingPrediction(qid="q", span_frames=(3, 5), boxes={3: [1.0, 2.0, 40.0, 50.0], 4: [1.0, 2.0, 41.0, 51.0]},
                            raw_text="from 0.3 s to 0.5 s", span_source="text", confidence=0.75)
    b = GroundingPrediction(qid="q", span_frames=(3, 5), boxes={3: [1.0, 2.0, _steps(40.0, 1), 50.0],
                                                                 4: [1.0, 2.0, 41.0, 51.0]},
                            raw_text="from 0.3 s to 0.5 s", span_source="text", confidence=_steps(0.75, -2))
    assert_same_prediction(a, b, frame_px=160)
    for change in ({"span_frames": (3, 6)}, {"raw_text": "from 0.3 s to 0.6 s"}, {"span_source": "relevance"},
                   {"boxes": {3: a.boxes[3]}}, {"boxes": {**a.boxes, 4: [1.0, 2.0, 41.1, 51.0]}},
                   {"confidence": 0.76}):
        other = GroundingPrediction(**{**a.__dict__, **change})
        with pytest.raises(AssertionError):
            assert_same_prediction(a, other, frame_px=160)


def test_iou_tolerance_follows_the_boxes_rounding_and_the_smallest_box() -> None:
    from stvg_plugin.util.box_ops import box_iou

    assert smallest_side([[0, 0, 40, 30], [10, 10, 34, 100]]) == 24
    ulps = iou_ulps(160, 24)
    assert ulps == math.ceil(ROUNDING_ULPS * 8 * 160 / 24)
    # a 24 px box against a box moved by the full box budget (16 float32 steps at 160 px) on every edge
    d = ROUNDING_ULPS * 2.0**-23 * 160
    gt, pred = [50.0, 50.0, 74.0, 74.0], [60.0, 55.0, 90.0, 80.0]
    moved = [pred[0] - d, pred[1] - d, pred[2] + d, pred[3] + d]
    a, b = box_iou(gt, pred), box_iou(gt, moved)
    assert a != b and isclose(a, b, ulps=ulps)
    assert not isclose(a, b)  # the plain box budget would not cover the IoU
