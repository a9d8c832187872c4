"""V-STaR "when" and "where" scoring plus the chain summaries AM / LGM (metrics.md §3).

The "what" accuracy needs an LLM judge and is outside this module; pass it to
:func:`vstar_chain_scores`. Thresholds use ``>=``. Spatial keys match as **exact strings** (a
predicted ``"3.0"`` does not match GT ``3``), the reference's behaviour.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from stvg_plugin.data import AnnotationError, GroundingPrediction, GroundingQuery
from stvg_plugin.util.box_ops import box_iou

VSTAR_TIOU_THRESHOLDS = (0.3, 0.5, 0.7)
VSTAR_AP_THRESHOLDS = (0.1, 0.3, 0.5, 0.7, 0.9)
_NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?")


def vstar_temporal_answer(answer: Any) -> list[float]:
    """A "when" answer -> ``[s, e]``; V-STaR accepts exactly two numbers, anything else -> ``[]``.

    Strings are read as Python literals (``ast.literal_eval``, never ``eval``) or, failing that, as
    the numbers found in the text.
    """
    if isinstance(answer, str):
        try:
            answer = ast.literal_eval(answer.strip())
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            answer = [float(x) for x in _NUMBER_RE.findall(answer)]
    if not isinstance(answer, (list, tuple)) or len(answer) != 2:
        return []
    try:
        return [float(answer[0]), float(answer[1])]
    except (TypeError, ValueError):
        return []


def vstar_tiou(gt: Sequence[float], pred: Any) -> float:
    """``max(0, min(ends) - max(starts)) / (max(ends) - min(starts))`` in seconds; bad input -> 0."""
    span = vstar_temporal_answer(pred)
    if not span:
        return 0.0
    union = max(gt[1], span[1]) - min(gt[0], span[0])
    if union <= 0:
        return 0.0
    return max(0.0, min(gt[1], span[1]) - max(gt[0], span[0])) / union


def _is_box(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and len(v) == 4 and all(isinstance(x, (int, float)) for x in v)


def vstar_spatial_ious(gt_boxes: Mapping[str, Sequence[float]], pred_boxes: Mapping[str, Any] | None) -> list[float]:
    """Best IoU per GT timestamp key (exact string match; malformed or absent -> 0), in GT key order."""
    pred_boxes = pred_boxes or {}
    ious = []
    for key, gt in gt_boxes.items():
        cand = pred_boxes.get(str(key))
        if _is_box(cand):
            boxes = [cand]
        elif isinstance(cand, (list, tuple)):
            boxes = [b for b in cand if _is_box(b)]
        else:
            boxes = []
        best = 0.0
        for b in boxes:
            v = box_iou(b, gt)
            if not math.isnan(v):
                best = max(best, v)
        ious.append(best)
    return ious


def vstar_chain_scores(acc: float, tiou: float, viou: float) -> dict[str, float]:
    """AM = arithmetic mean; LGM = -mean(log(1 - x)) of (Acc, m_tIoU, m_vIoU), fractions.

    A value of exactly 1 makes the reference raise (log 0); here LGM is then ``inf``.
    """
    vals = (acc, tiou, viou)
    am = sum(vals) / 3
    lgm = math.inf if any(v >= 1 for v in vals) else -sum(math.log(1 - v) for v in vals) / 3
    return {"AM": am, "LGM": lgm}


def vstar_summary(acc: float, chain1: tuple[float, float], chain2: tuple[float, float]) -> dict[str, float]:
    """AM1/AM2/mAM and LGM1/LGM2/mLGM from the "what" accuracy and each chain's (m_tIoU, m_vIoU)."""
    c1, c2 = vstar_chain_scores(acc, *chain1), vstar_chain_scores(acc, *chain2)
    return {
        "AM1": c1["AM"],
        "AM2": c2["AM"],
        "mAM": (c1["AM"] + c2["AM"]) / 2,
        "LGM1": c1["LGM"],
        "LGM2": c2["LGM"],
        "mLGM": (c1["LGM"] + c2["LGM"]) / 2,
    }


def _time_key(t: float) -> str:
    """Whole seconds print like V-STaR's integer GT keys (``3``), others as Python floats."""
    return str(int(t)) if float(t).is_integer() else str(t)


def gt_boxes_by_time(q: GroundingQuery) -> dict[str, list[float]]:
    """GT boxes keyed like V-STaR: ``extra["boxes_by_time"]`` if the adapter stored it, else frame/fps."""
    stored = q.extra.get("boxes_by_time")
    if isinstance(stored, Mapping):
        return {str(k): list(v) for k, v in stored.items()}
    if not q.fps:
        raise AnnotationError("vstar query needs extra['boxes_by_time'] or fps", entry=f"qid {q.qid}")
    return {_time_key(f / q.fps): list(b) for f, b in sorted(q.boxes.items())}


def pred_boxes_by_time(q: GroundingQuery, p: GroundingPrediction) -> dict[str, Any]:
    stored = p.extra.get("boxes_by_time")
    if isinstance(stored, Mapping):
        return {str(k): v for k, v in stored.items()}
    if not q.fps:
        return {}
    return {_time_key(f / q.fps): list(b) for f, b in p.boxes.items()}


def score_vstar(queries: Sequence[GroundingQuery], preds: Sequence[GroundingPrediction | None]) -> list[dict]:
    """Per-query ``tIoU``, ``R1@m`` (``>=``), ``vIoU`` (mean over GT timestamps) and ``AP@m``.

    The predicted "when" answer is ``span_s``, else ``extra["answer_temporal"]`` (text or list).
    ``AP@m`` is averaged per item in the summary (pooling over all GT frames is unconfirmed).
    """
    rows = []
    for q, p in zip(queries, preds):
        if q.span_s is None:
            raise AnnotationError("vstar query has no span_s (GT timestamps)", entry=f"qid {q.qid}")
        gt_boxes = gt_boxes_by_time(q)
        if p is None:
            tiou, ious = 0.0, [0.0] * len(gt_boxes)
        else:
            answer = list(p.span_s) if p.span_s is not None else p.extra.get("answer_temporal")
            tiou = vstar_tiou(q.span_s, answer)
            ious = vstar_spatial_ious(gt_boxes, pred_boxes_by_time(q, p))
        row = {"tIoU": tiou}
        row.update({f"R1@{t}": float(tiou >= t) for t in VSTAR_TIOU_THRESHOLDS})
        row["vIoU"] = sum(ious) / len(ious) if ious else None
        for m in VSTAR_AP_THRESHOLDS:
            row[f"AP@{m}"] = sum(v >= m for v in ious) / len(ious) if ious else None
        rows.append(row)
    return rows
