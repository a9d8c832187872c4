"""Box and interval utilities, written once and reused everywhere (DETR's ``util/box_ops.py`` idea).

Conventions: ``xyxy`` = absolute corners ``[x1, y1, x2, y2]``; ``xywh`` = top-left + size;
``cxcywh`` = centre + size. IoU is the plain area ratio (no ``+1``), intersection sides clipped
at 0, exactly as the TubeDETR / HC-STVG evaluators compute it.

Three flavours of the same conventions live side by side, each for the callers that need it:

* numpy on arrays of shape ``(..., 4)`` (float64): the metric engine vectorises over every frame of
  every query, the model core post-processes decoder boxes;
* torch (``torch_*``, differentiable): the training losses; ``torch`` is imported only when called,
  so the metric engine does not pay for it;
* plain Python floats (:func:`reference_box_iou`, :func:`interval_iou`): the evaluators we reproduce
  (lmms-eval, V-STaR) compute IoU with Python's ``min`` / ``max``, whose results on NaN depend on the
  argument order, so those protocols keep that arithmetic to give their numbers bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

BoxLike = Sequence[float] | np.ndarray


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64)
    return np.concatenate([b[..., :2], b[..., :2] + b[..., 2:4]], axis=-1)


def xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64)
    return np.concatenate([b[..., :2], b[..., 2:4] - b[..., :2]], axis=-1)


def cxcywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64)
    half = b[..., 2:4] / 2.0
    return np.concatenate([b[..., :2] - half, b[..., :2] + half], axis=-1)


def xyxy_to_cxcywh(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64)
    return np.concatenate([(b[..., :2] + b[..., 2:4]) / 2.0, b[..., 2:4] - b[..., :2]], axis=-1)


def scale_boxes(boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    """Normalised -> absolute pixels (works for xyxy, xywh and cxcywh alike)."""
    b = np.asarray(boxes, dtype=np.float64)
    return b * np.array([width, height, width, height], dtype=np.float64)


def normalize_boxes(boxes: np.ndarray, width: float, height: float, clip: bool = False) -> np.ndarray:
    """Absolute pixels -> fractions of the frame (xyxy, xywh and cxcywh alike).

    ``clip`` keeps each value in [0, 1] as Python's ``min(max(v, 0.0), 1.0)`` does: NaN and -0.0
    pass through (numpy's ``maximum`` returns its second argument on a tie, hence the order below).
    """
    b = np.asarray(boxes, dtype=np.float64)
    out = b / np.array([width, height, width, height], dtype=np.float64)
    if clip:
        np.maximum(0.0, out, out=out)
        np.minimum(1.0, out, out=out)
    return out


def box_area(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64)
    return (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])


def pairwise_iou(a: np.ndarray, b: np.ndarray, eps: float = 0.0) -> np.ndarray:
    """Element-wise IoU of two ``(..., 4)`` xyxy arrays (broadcast against each other).

    ``iw = max(min(x2) - max(x1), 0)`` (likewise ``ih``), ``IoU = iw * ih / (area_a + area_b - inter + eps)``:
    areas as given (a swapped box has a negative area, as in the reference evaluators). No zero-union
    guard by default (the references have none: 0/0 gives NaN, which the caller counts); ``eps`` is
    added to the union where a protocol does so. This is the metric engine's hot loop, so it runs on
    column views with in-place ufuncs; values are those of the plain formula, NaN and -0.0 included.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    shape = np.broadcast_shapes(a.shape, b.shape)
    if a.shape != shape or b.shape != shape or a.ndim != 2:  # the engine's (n, 4) rows skip this
        a = np.broadcast_to(a, shape).reshape(-1, 4)
        b = np.broadcast_to(b, shape).reshape(-1, 4)
    a0, a1, a2, a3 = a[:, 0], a[:, 1], a[:, 2], a[:, 3]
    b0, b1, b2, b3 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        iw = np.minimum(a2, b2)
        iw -= np.maximum(a0, b0)
        np.maximum(iw, 0.0, out=iw)  # == np.clip(iw, 0, None), NaN and -0.0 included
        ih = np.minimum(a3, b3)
        ih -= np.maximum(a1, b1)
        np.maximum(ih, 0.0, out=ih)
        inter = iw
        inter *= ih
        union = a2 - a0
        union *= a3 - a1
        area_b = b2 - b0
        area_b *= b3 - b1
        union += area_b
        union -= inter
        if eps:  # adding 0.0 could only turn a -0.0 union into +0.0: the IoU is NaN either way
            union += eps
        inter /= union
    return inter.reshape(shape[:-1])


def box_iou(a: BoxLike, b: BoxLike) -> float:
    """IoU of two single xyxy boxes (scalar convenience over :func:`pairwise_iou`)."""
    return float(pairwise_iou(np.asarray(a), np.asarray(b)))


def reference_box_iou(gt: Sequence[Any], pred: Sequence[Any]) -> float | None:
    """IoU of two xyxy boxes in plain Python arithmetic, as lmms-eval (RefCOCO) and V-STaR compute it.

    ``max(0, min(x2) - max(x1))`` etc. with the GT box first in every ``min`` / ``max`` (on NaN,
    Python's ``min`` / ``max`` return one argument or the other by position, so the order is part of
    the result); ``None`` where the union is not ``> 0`` (each caller scores that its own way). Each
    box is unpacked as exactly four values (a longer or shorter one raises, as in V-STaR).
    """
    gx0, gy0, gx1, gy1 = gt
    px0, py0, px1, py1 = pred
    iw = max(0, min(gx1, px1) - max(gx0, px0))
    ih = max(0, min(gy1, py1) - max(gy0, py0))
    inter = iw * ih
    union = (gx1 - gx0) * (gy1 - gy0) + (px1 - px0) * (py1 - py0) - inter
    return inter / union if union > 0 else None


def interval_iou(gt: Sequence[Any], pred: Sequence[Any], nan_scores_zero: bool = False) -> float:
    """Temporal IoU of two ``[start, end]`` intervals in plain Python arithmetic (seconds or frames).

    ``max(min(ends) - max(starts), 0) / (max(ends) - min(starts))``, 0.0 where that union is not
    positive; the GT comes first in every ``min`` / ``max``. The two evaluators we reproduce differ
    only on NaN: lmms-eval's Charades (default) lets a NaN through, V-STaR (``nan_scores_zero``,
    ``max(0, inter)`` and ``if union > 0``) scores it 0.
    """
    union = max(gt[1], pred[1]) - min(gt[0], pred[0])
    inter = min(gt[1], pred[1]) - max(gt[0], pred[0])
    if nan_scores_zero:
        return max(0, inter) / union if union > 0 else 0.0
    if union <= 0:
        return 0.0
    return max(inter, 0) / union


def interval_iou_array(gs: np.ndarray, ge: np.ndarray, ps: np.ndarray, pe: np.ndarray) -> np.ndarray:
    """Vectorised temporal IoU of end-exclusive integer frame spans ``[gs, ge)`` vs ``[ps, pe)`` (TubeDETR's).

    ``inter = min(ends) - max(starts)``, ``union = |G| + |P| - inter``; 0 unless both are positive
    (a reversed or disjoint span scores 0).
    """
    inter = np.minimum(ge, pe) - np.maximum(gs, ps)
    union = (ge - gs) + (pe - ps) - inter
    tiou = np.zeros(gs.size, dtype=np.float64)
    ok = (inter > 0) & (union > 0)
    tiou[ok] = inter[ok] / union[ok]
    return tiou


# --------------------------------------------------------------------------- torch (training losses)


def torch_cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """The torch twin of :func:`cxcywh_to_xyxy` (differentiable)."""
    import torch

    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def torch_generalized_iou(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Element-wise GIoU of xyxy boxes ``(..., 4)`` (differentiable; ``eps`` guards empty unions).

    Unlike :func:`pairwise_iou`, areas are clamped at 0 (a box the decoder predicts inverted adds no
    area) and ``eps`` is always added: a loss must never be NaN.
    """
    import torch

    area_a = (a[..., 2] - a[..., 0]).clamp(min=0) * (a[..., 3] - a[..., 1]).clamp(min=0)
    area_b = (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)
    iw = (torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0])).clamp(min=0)
    ih = (torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1])).clamp(min=0)
    inter = iw * ih
    union = area_a + area_b - inter
    iou = inter / (union + eps)
    hw = torch.maximum(a[..., 2], b[..., 2]) - torch.minimum(a[..., 0], b[..., 0])
    hh = torch.maximum(a[..., 3], b[..., 3]) - torch.minimum(a[..., 1], b[..., 1])
    hull = hw * hh
    return iou - (hull - union) / (hull + eps)


class BoxRepairStats:
    """Counts of boxes repaired or rejected by :func:`sanitize_box` (reported, never silent)."""

    def __init__(self) -> None:
        self.swapped = 0
        self.rejected_nan = 0
        self.rejected_empty = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "boxes_swapped_corners": self.swapped,
            "boxes_rejected_nan": self.rejected_nan,
            "boxes_rejected_empty": self.rejected_empty,
        }


def sanitize_box(box: BoxLike, stats: BoxRepairStats | None = None) -> list[float] | None:
    """Apply the project's documented box rule; returns a clean xyxy list or ``None`` (rejected).

    Rule (README "Formats"): a box with a NaN/inf coordinate or not exactly 4 numbers is
    rejected; swapped corners (x2 < x1 or y2 < y1) are repaired by swapping; a box of zero or
    negative area after that is rejected. A rejected box is treated as "no box" (IoU 0 on that
    frame) and counted.
    """
    try:
        vals = [float(v) for v in box]
    except (TypeError, ValueError):
        if stats is not None:
            stats.rejected_nan += 1
        return None
    if len(vals) != 4 or not all(math.isfinite(v) for v in vals):
        if stats is not None:
            stats.rejected_nan += 1
        return None
    x1, y1, x2, y2 = vals
    if x2 < x1 or y2 < y1:
        x1, x2 = min(x1, x2), max(x1, x2)
        y1, y2 = min(y1, y2), max(y1, y2)
        if stats is not None:
            stats.swapped += 1
    if x2 - x1 <= 0 or y2 - y1 <= 0:
        if stats is not None:
            stats.rejected_empty += 1
        return None
    return [x1, y1, x2, y2]


def sanitize_box_array(boxes: np.ndarray, stats: BoxRepairStats | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised :func:`sanitize_box` over an ``(n, 4)`` array (the metric engine's path).

    Same rule and the same counters: non-finite -> rejected (``rejected_nan``); swapped corners are
    swapped back (``swapped``); zero/negative area after that -> rejected (``rejected_empty``).
    Returns ``(clean_boxes, valid_mask)``; rows where ``valid_mask`` is False must be treated as absent.
    The tests check it against the scalar function box by box. ``boxes`` is not modified.
    """
    clean = np.array(boxes, dtype=np.float64).reshape(-1, 4)  # a copy of our own, sanitised in place
    return clean, sanitize_box_array_in_place(clean, stats)


def sanitize_box_array_in_place(
    boxes: np.ndarray, stats: BoxRepairStats | None = None, num_absent: int = 0
) -> np.ndarray:
    """:func:`sanitize_box_array` on an ``(n, 4)`` float64 array the caller owns, in place -> valid mask.

    Computed on column views without a defensive copy (the metric engine's boxes are built for it).
    ``num_absent`` rows of NaN stand for "no box": rejected, not counted.
    """
    x1, y1, x2, y2 = boxes.T
    with np.errstate(invalid="ignore", over="ignore"):
        total = x1 + y1
        total += x2
        total += y2
        finite = np.isfinite(total)  # a finite sum can only come from finite rows
    if not finite.all():  # the sum also overflows on huge finite boxes: decide those exactly
        finite = np.isfinite(x1) & np.isfinite(y1) & np.isfinite(x2) & np.isfinite(y2)
    swapped = (x2 < x1) | (y2 < y1)  # False on NaN rows
    if swapped.any():
        for lo, hi in ((x1, x2), (y1, y2)):
            low = np.minimum(lo, hi)
            np.maximum(lo, hi, out=hi)
            lo[...] = low
    with np.errstate(invalid="ignore"):
        nonempty = ((x2 - x1) > 0) & ((y2 - y1) > 0)
    valid = finite & nonempty
    if stats is not None:
        stats.rejected_nan += int(finite.size - np.count_nonzero(finite)) - num_absent
        stats.swapped += int(np.count_nonzero(swapped & finite))
        stats.rejected_empty += int(np.count_nonzero(finite & ~nonempty))
    return valid
