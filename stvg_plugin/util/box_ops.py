"""Box utilities, written once and reused everywhere (DETR's ``util/box_ops.py`` idea).

Conventions: ``xyxy`` = absolute corners ``[x1, y1, x2, y2]``; ``xywh`` = top-left + size;
``cxcywh`` = centre + size. IoU is the plain area ratio (no ``+1``), intersection sides clipped
at 0, exactly as the TubeDETR / HC-STVG evaluators compute it. All functions work on numpy
arrays of shape ``(..., 4)`` so the metric engine can vectorise over every frame of every query.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

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
    """Normalised -> absolute pixels (works for xyxy and cxcywh alike)."""
    b = np.asarray(boxes, dtype=np.float64)
    return b * np.array([width, height, width, height], dtype=np.float64)


def normalize_boxes(boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64)
    return b / np.array([width, height, width, height], dtype=np.float64)


def box_area(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64)
    return (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])


def pairwise_iou(a: np.ndarray, b: np.ndarray, eps: float = 0.0) -> np.ndarray:
    """Element-wise IoU of two equally shaped ``(..., 4)`` xyxy arrays.

    No zero-union guard by default (the reference evaluators have none: 0/0 gives NaN);
    ``eps`` is added to the union where a protocol does so (VUE-STG).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    union = box_area(a) + box_area(b) - inter + eps
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / union


def box_iou(a: BoxLike, b: BoxLike) -> float:
    """IoU of two single xyxy boxes (scalar convenience over :func:`pairwise_iou`)."""
    return float(pairwise_iou(np.asarray(a), np.asarray(b)))


def generalized_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise GIoU of xyxy arrays (numpy; the torch twin lives in ``models.losses``)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    iou = pairwise_iou(a, b)
    cw = np.maximum(a[..., 2], b[..., 2]) - np.minimum(a[..., 0], b[..., 0])
    ch = np.maximum(a[..., 3], b[..., 3]) - np.minimum(a[..., 1], b[..., 1])
    hull = cw * ch
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    union = box_area(a) + box_area(b) - iw * ih
    with np.errstate(divide="ignore", invalid="ignore"):
        return iou - (hull - union) / hull


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
    The tests check it against the scalar function box by box.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    with np.errstate(invalid="ignore", over="ignore"):
        finite = np.isfinite(b.sum(axis=1))  # one pass; a finite sum can only come from finite rows
    if not finite.all():  # the sum also overflows on huge finite boxes: decide those exactly
        finite = np.isfinite(b).all(axis=1)
    x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    swapped = (x2 < x1) | (y2 < y1)  # False on NaN rows
    if swapped.any():
        clean = np.empty_like(b)
        np.minimum(x1, x2, out=clean[:, 0])
        np.minimum(y1, y2, out=clean[:, 1])
        np.maximum(x1, x2, out=clean[:, 2])
        np.maximum(y1, y2, out=clean[:, 3])
    else:
        clean = b.copy()
    with np.errstate(invalid="ignore"):
        nonempty = ((clean[:, 2] - clean[:, 0]) > 0) & ((clean[:, 3] - clean[:, 1]) > 0)
    valid = finite & nonempty
    if stats is not None:
        stats.rejected_nan += int(b.shape[0] - np.count_nonzero(finite))
        stats.swapped += int(np.count_nonzero(swapped & finite))
        stats.rejected_empty += int(np.count_nonzero(finite & ~nonempty))
    return clean, valid
