"""Referring expression comprehension (RefCOCO in lmms-eval): IoU, ACC@t (``>=``), Center_ACC.

lmms-eval compares normalised xyxy boxes; we normalise by the query's width/height (when known)
so the floats, and thus threshold edge cases, equal lmms-eval's (metrics.md §6).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from stvg_plugin.data import AnnotationError, GroundingPrediction, GroundingQuery
from stvg_plugin.metrics.protocols import ProtocolSpec, register_protocol
from stvg_plugin.util.box_ops import BoxRepairStats, normalize_boxes, reference_box_iou, sanitize_box

REC_THRESHOLDS = (0.1, 0.3, 0.5, 0.7, 0.9)
_NUM = r"(-?\d+(?:\.\d+)?)"
_BRACKETED_BOX_RE = re.compile(rf"\[\s*{_NUM},\s*{_NUM},\s*{_NUM},\s*{_NUM}\s*\]")


def parse_rec_answer(text: str) -> list[float] | None:
    """First ``[a, b, c, d]`` (lmms-eval's pattern: no space before commas) in the text, else ``None``."""
    if not isinstance(text, str):
        return None
    m = _BRACKETED_BOX_RE.search(text)
    return [float(m.group(i)) for i in range(1, 5)] if m else None


def rec_iou(gt: Sequence[float], pred: Sequence[float]) -> float | None:
    """Plain xyxy IoU as lmms-eval computes it; ``None`` where the union is 0 (lmms-eval divides by 0)."""
    return reference_box_iou(gt, pred)


def center_inside(gt: Sequence[float], pred: Sequence[float]) -> bool:
    cx, cy = (pred[0] + pred[2]) / 2, (pred[1] + pred[3]) / 2
    return gt[0] <= cx <= gt[2] and gt[1] <= cy <= gt[3]


def _first_box(boxes: dict) -> list[float] | None:
    return list(boxes[min(boxes)]) if boxes else None


def _normalise(box: Sequence[float], q: GroundingQuery) -> list[float]:
    if q.width and q.height:
        return normalize_boxes(box, q.width, q.height).tolist()
    return list(box)


def score_rec(
    queries: Sequence[GroundingQuery],
    preds: Sequence[GroundingPrediction | None],
    stats: BoxRepairStats,
    counters: dict,
) -> list[dict]:
    """Per-query ``IoU``, ``ACC@t``, ``Center_ACC``. A missing/unparsable/rejected box scores 0.

    GT = the query's first box (pixels). Prediction = its first box (pixels), else the first
    bracketed box in ``raw_text`` read as normalised [0, 1] coordinates (lmms-eval's prompt asks for
    that). Predicted boxes go through ``sanitize_box``; a rejected box scores 0 on every metric
    (lmms-eval's ``[0,0,0,0]`` fallback scores 0 IoU too).
    """
    rows = []
    for q, p in zip(queries, preds):
        gt = _first_box(q.boxes)
        if gt is None:
            raise AnnotationError("rec query has no ground-truth box", entry=f"qid {q.qid}")
        gt_n = _normalise(gt, q)
        pred_n = None
        if p is not None:
            raw = _first_box(p.boxes)
            if raw is not None:
                clean = sanitize_box(raw, stats)
                pred_n = _normalise(clean, q) if clean is not None else None
            elif p.raw_text is not None:
                parsed = parse_rec_answer(p.raw_text)
                clean = sanitize_box(parsed, stats) if parsed is not None else None
                pred_n = clean
        iou = rec_iou(gt_n, pred_n) if pred_n is not None else 0.0
        if iou is None or np.isnan(iou):
            counters["nan"] = counters.get("nan", 0) + 1
            iou = 0.0
        row = {"IoU": iou}
        row.update({f"ACC@{t}": float(iou >= t) for t in REC_THRESHOLDS})
        row["Center_ACC"] = float(pred_n is not None and center_inside(gt_n, pred_n))
        rows.append(row)
    return rows


register_protocol(
    ProtocolSpec(
        "rec",
        lambda qs, ps, ctx: score_rec(qs, ps, ctx.stats, ctx.other),
        lambda thresholds: [("IoU", "mIoU")] + [(f"ACC@{t}", f"ACC@{t}") for t in REC_THRESHOLDS]
        + [("Center_ACC", "Center_ACC")],
        tasks=("rec",),
        default_for=("rec",),
        reads_text=lambda p, q, parse_text: not p.boxes,  # the answer text is parsed only without a box
        percent=True,
    )
)
