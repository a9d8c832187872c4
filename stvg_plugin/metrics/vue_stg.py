"""VUE-STG (Vidi2) tube metrics on 1 s bins (metrics.md §5).

Undefined ratios (zero denominator) are ``None`` and the summary mean skips them, as the reference
does; e.g. ``v_IoU_Int`` averages only queries whose tubes overlap in time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from stvg_plugin.data import AnnotationError, GroundingPrediction, GroundingQuery

VUE_METRICS = ("t_IoU", "t_Recall", "t_Precision", "v_IoU", "v_Recall", "v_Precision", "v_IoU_Int", "3D_IoU")
_EPS = float(np.finfo(np.float64).eps)


def round_half_up_second(t: float) -> int:
    """1.499 s -> 1, 1.5 s -> 2 (Python's ``round`` would give banker's rounding)."""
    return int(math.floor(t + 0.5 + 1e-9))


def _bin_tube(tube: Iterable[tuple[float, Sequence[float]]]) -> dict[int, np.ndarray]:
    """Quantise ``(time_s, normalised xyxy)`` to seconds; fix swapped corners, clip to [0, 1], first box wins."""
    out: dict[int, np.ndarray] = {}
    for t, box in sorted(tube, key=lambda tb: tb[0]):
        sec = round_half_up_second(float(t))
        if sec in out:
            continue
        b = np.asarray(box, dtype=np.float64)
        if b.shape != (4,) or not np.isfinite(b).all():
            continue
        b = np.clip(np.concatenate([np.minimum(b[:2], b[2:]), np.maximum(b[:2], b[2:])]), 0.0, 1.0)
        if (b[2] - b[0]) * (b[3] - b[1]) > 0:
            out[sec] = b
    return out


def _ratio(num: float, den: float) -> float | None:
    return float(num / den) if den > 0 else None


def vue_stg_scores(
    gt_tube: Iterable[tuple[float, Sequence[float]]], pred_tube: Iterable[tuple[float, Sequence[float]]]
) -> dict[str, float | None]:
    """The seven VUE-STG metrics plus ``3D_IoU`` for one query from ``(time_s, normalised box)`` lists."""
    g, p = _bin_tube(gt_tube), _bin_tube(pred_tube)
    inter_t = g.keys() & p.keys()
    union_t = g.keys() | p.keys()
    s = 0.0
    inter_area = union_area = 0.0
    for t in union_t:
        a, b = g.get(t), p.get(t)
        area_a = (a[2] - a[0]) * (a[3] - a[1]) if a is not None else 0.0
        area_b = (b[2] - b[0]) * (b[3] - b[1]) if b is not None else 0.0
        inter = 0.0
        if a is not None and b is not None:
            iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
            ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
            inter = float(iw * ih)
            s += inter / (area_a + area_b - inter + _EPS)
        inter_area += inter
        union_area += area_a + area_b - inter
    ni, nu, ng, npred = len(inter_t), len(union_t), len(g), len(p)
    return {
        "t_IoU": _ratio(ni, nu),
        "t_Recall": _ratio(ni, ng),
        "t_Precision": _ratio(ni, npred),
        "v_IoU": _ratio(s, nu),
        "v_Recall": _ratio(s, ng),
        "v_Precision": _ratio(s, npred),
        "v_IoU_Int": _ratio(s, ni),
        "3D_IoU": _ratio(inter_area, union_area),
    }


def _tube_of(boxes: dict, q: GroundingQuery) -> list[tuple[float, list[float]]]:
    w, h = (q.width or 1), (q.height or 1)
    return [(f / q.fps, [b[0] / w, b[1] / h, b[2] / w, b[3] / h]) for f, b in boxes.items()]


def score_vue_stg(queries: Sequence[GroundingQuery], preds: Sequence[GroundingPrediction | None]) -> list[dict]:
    """Frame-keyed pixel boxes -> seconds (``frame / fps``) and normalised boxes, then :func:`vue_stg_scores`."""
    rows = []
    for q, p in zip(queries, preds):
        if not q.fps:
            raise AnnotationError("vue_stg query needs a positive fps", entry=f"qid {q.qid}")
        pred = _tube_of(p.boxes, q) if p is not None and p.boxes else []  # no boxes (None/empty): empty tube
        rows.append(vue_stg_scores(_tube_of(q.boxes, q), pred))
    return rows
