"""Comparing floats that a model computed: the one rule for every test tolerance on model outputs.

Two computations of the same model output (a batch of 8 against one query at a time, encode once
against encode again, the teacher-forced pass against the cached one, a FiftyOne or lmms-eval run
against a direct one, another process) do the same arithmetic on the same float32 weights, but not in
the same order: a matrix product blocks its sums differently for 8 rows than for 1, ATen picks its
kernels at run time by CPU (AVX-512, AVX2 or plain code: ``ATEN_CPU_CAPABILITY``, so another CPU sums
in other vector widths), and the number of threads splits some reductions. The results agree to float
rounding, not bit for bit (an AMD EPYC with AVX2 put a box corner at 39.842543 px batched and 39.842548
px alone: one float32 step). So a tolerance follows from the dtype's resolution and the magnitude of
what is compared, never from what one machine produced:

    |a - b| <= ulps * eps(dtype) * max(|a|, |b|, scale)

* ``eps(float32) = 2**-23 ~ 1.19e-7`` (``eps(float64) = 2**-52`` for values computed in float64).
* ``scale`` is the magnitude the value was computed at: 1 for normalised boxes, probabilities, logits
  of order 1 and IoU-based metrics; the frame size in pixels for pixel boxes (a pixel box is a
  normalised float32 output times the frame size, so a corner near 0 px carries the rounding of the
  frame size, not of its own small value).
* ``ulps = ROUNDING_ULPS = 16``: reordering a sum of n float32 terms typically moves it by about
  sqrt(n) steps of its magnitude (n at worst); the tiny test models' longest sums have ~256 terms
  (widths 32 to 128, attention over ~200 positions): ~16 steps, and their few layers normalise rather
  than amplify. Measured on this project's tests under ATEN_CPU_CAPABILITY=default, avx2 and avx512 with
  1 and 2 threads: at most ~2 steps. A defect is far above it: two *different* queries' boxes on the
  untrained tiny model are already 190 to 500 steps apart at 160 px, so a row read from another
  query, a wrong padding mask or a stale cache fails. 16 steps is 1.9e-6 relative, 0.0003 px at 160 px.

Metrics computed from such boxes (IoUs and their means) get the boxes' rounding amplified: see
:func:`iou_ulps`.

Everything that is exact stays exact, and these helpers compare it with ``==``: spans and frame keys
(integers), texts (greedy decoding), statuses, keys, and the metric engine on given inputs.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

ROUNDING_ULPS = 16


def rounding_tol(dtype: Any = np.float32, ulps: int = ROUNDING_ULPS) -> float:
    """Relative tolerance for two computations of one value in ``dtype``: ``ulps`` rounding steps."""
    eps = torch.finfo(dtype).eps if isinstance(dtype, torch.dtype) else np.finfo(dtype).eps
    return float(ulps * eps)


def _name(dtype: Any) -> str:
    return str(dtype).removeprefix("torch.") if isinstance(dtype, torch.dtype) else np.dtype(dtype).name


def isclose(a: float, b: float, *, scale: float = 1.0, dtype: Any = np.float32, ulps: int = ROUNDING_ULPS) -> bool:
    """``|a - b| <= ulps * eps(dtype) * max(|a|, |b|, scale)`` (see the module docstring)."""
    tol = rounding_tol(dtype, ulps)
    return math.isclose(a, b, rel_tol=tol, abs_tol=tol * scale)


def smallest_side(boxes: Any) -> float:
    """The smallest width or height among xyxy pixel boxes (an iterable of 4-sequences)."""
    return min(min(float(b[2]) - float(b[0]), float(b[3]) - float(b[1])) for b in boxes)


def iou_ulps(frame_px: float, smallest_side_px: float) -> int:
    """Rounding steps (at scale 1) to allow on an IoU-based metric computed from pixel boxes that agree
    to ``ROUNDING_ULPS`` steps at ``frame_px``: moving box edges by d px moves the intersection and the
    union of boxes whose sides are at least s px by at most ~4 d s each, hence the IoU by ~8 d / s. The
    boxes' rounding becomes ``8 * frame_px / s`` times as many steps of the metric (s = 24 px on a
    160 px frame: 54 x, ~1e-4)."""
    return math.ceil(ROUNDING_ULPS * 8 * frame_px / smallest_side_px)


def assert_close(
    a: Any, b: Any, where: str = "", *, scale: float = 1.0, dtype: Any = np.float32, ulps: int = ROUNDING_ULPS
) -> None:
    """Recursive equality of JSON-like values, floats within rounding (:func:`isclose`), everything else
    (ints, strings, bools, None, keys, lengths) exact; names the first difference.

    Pass ``scale`` = the frame size in pixels when the values hold pixel boxes.
    """
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        assert a == b, f"{where or 'value'}: {a!r} != {b!r}"
    elif isinstance(a, (float, np.floating)) or isinstance(b, (float, np.floating)):
        numbers = (int, float, np.integer, np.floating)
        assert isinstance(a, numbers) and isinstance(b, numbers), f"{where}: {a!r} != {b!r}"
        assert isclose(float(a), float(b), scale=scale, dtype=dtype, ulps=ulps), (
            f"{where or 'value'}: {a!r} != {b!r} (more than {ulps} {_name(dtype)} rounding steps at scale {scale})"
        )
    elif isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), f"{where or 'dict'}: keys {sorted(map(str, a))} != {sorted(map(str, b))}"
        for k in a:
            assert_close(a[k], b[k], f"{where}[{k!r}]", scale=scale, dtype=dtype, ulps=ulps)
    elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        assert len(a) == len(b), f"{where or 'sequence'}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_close(x, y, f"{where}[{i}]", scale=scale, dtype=dtype, ulps=ulps)
    else:
        assert a == b, f"{where or 'value'}: {a!r} != {b!r}"


def tensors_close(a: Any, b: Any, *, scale: float | None = None, ulps: int = ROUNDING_ULPS) -> bool:
    """Elementwise :func:`isclose` for tensors/arrays of the same shape, in their own dtype's resolution.

    ``scale`` defaults to the largest magnitude in ``b`` (the reference): the tensor's own magnitude.
    """
    ta, tb = torch.as_tensor(a), torch.as_tensor(b)
    assert ta.shape == tb.shape, f"shape {tuple(ta.shape)} != {tuple(tb.shape)}"
    tol = rounding_tol(ta.dtype if ta.is_floating_point() else torch.float32, ulps)
    a64, b64 = ta.detach().double(), tb.detach().double()
    if scale is None:
        scale = float(b64.abs().max()) if b64.numel() else 0.0
    bound = tol * torch.maximum(torch.maximum(a64.abs(), b64.abs()), torch.tensor(float(scale), dtype=torch.float64))
    return bool(((a64 - b64).abs() <= bound).all())


def assert_tensors_close(a: Any, b: Any, where: str = "", *, scale: float | None = None, ulps: int = ROUNDING_ULPS) -> None:
    """:func:`tensors_close` as an assertion that reports the largest difference in rounding steps."""
    if tensors_close(a, b, scale=scale, ulps=ulps):
        return
    ta, tb = torch.as_tensor(a).detach(), torch.as_tensor(b).detach()
    eps = rounding_tol(ta.dtype if ta.is_floating_point() else torch.float32, 1)
    ref = float(tb.double().abs().max()) if scale is None else scale
    worst = float((ta.double() - tb.double()).abs().max())
    raise AssertionError(
        f"{where or 'tensors'}: max |a - b| = {worst:.3g} = {worst / (eps * max(ref, 1e-300)):.1f} rounding steps of "
        f"{_name(ta.dtype)} at scale {ref:.3g} (allowed {ulps})"
    )


def assert_same_prediction(a: Any, b: Any, frame_px: float) -> None:
    """Two :class:`~stvg_plugin.data.GroundingPrediction` of one query by two computations: qid, text,
    spans, span source, parse status, error and box frame keys exactly; pixel boxes to float32 rounding
    at the frame's size ``frame_px`` (its larger side)."""
    assert a.qid == b.qid and a.raw_text == b.raw_text, (a.qid, a.raw_text, b.qid, b.raw_text)
    assert a.span_frames == b.span_frames and a.span_s == b.span_s, (a.qid, a.span_frames, b.span_frames)
    assert a.span_source == b.span_source and a.parse_failed == b.parse_failed and a.error == b.error, a.qid
    assert_close(a.confidence, b.confidence, f"{a.qid} confidence")
    assert sorted(a.boxes) == sorted(b.boxes), a.qid
    for f in a.boxes:
        assert_close([float(x) for x in a.boxes[f]], [float(x) for x in b.boxes[f]], f"{a.qid} boxes[{f}]",
                     scale=frame_px)
