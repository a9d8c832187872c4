"""VUE-STG (Vidi2) tube metrics on 1 s bins, as ``bytedance/vidi`` ``VUE_STG/evaluate.py`` + ``tube.py``.

Official rules reproduced (metrics.md §5, docs/PROTOCOLS.md):

* a tube is rows ``(time_ms, x0, y0, x1, y1)`` in file order; ``time_ms`` is an integer (the CSV
  reader truncates), quantised to ``((t * 2 + 1000) // 2000) * 1000`` (round half up, floor for
  negative times); every row is kept in its second's list, in file order (``Tube.add_bbox``);
* each box is sanitised on insertion (``_sanitize_bbox``): corners swapped if reversed, then each
  coordinate clipped with ``max(0, min(1, v))`` (an infinite one becomes 0 or 1); rows holding NaN are
  dropped, as the CSV reader's ``dropna`` does;
* per second the ``multi_boxes_policy`` picks ``first`` (the first row of that second in file order,
  even if it has zero area), ``last``, or ``union`` (the region covered by all of them);
* a second "exists" for a tube when its region's area is > 0; the 2D IoU is
  ``inter / (union + eps)`` summed over every second of either tube;
* t_IoU / t_Recall / t_Precision, v_IoU / v_Recall / v_Precision / v_IoU_Int (2D sums) and
  3D_IoU / 3D_Recall / 3D_Precision (``sum inter / (sum union|area + eps)``); a zero denominator gives
  None and the summary mean skips None (pandas ``mean``);
* a query without prediction gets an empty tube; group columns ``area_group`` (GT mean box area
  < 10 %, 10-30 %, > 30 %), ``video_length_group`` (< 1 min, 1-10 min, 10-30 min) and
  ``gt_length_group`` (GT seconds < 3, 3-10, 10-60), bins closed on the left; a value past the last
  bin has no group.

The only difference: both tubes empty makes the official assert; here the query scores None / 0 and
is counted in ``num_crash_scored_zero``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from stvg_plugin.data import AnnotationError, GroundingPrediction, GroundingQuery, frame_seconds
from stvg_plugin.metrics.protocols import ProtocolSpec, register_protocol
from stvg_plugin.util.box_ops import box_area, normalize_boxes

VUE_METRICS = (
    "t_IoU", "t_Recall", "t_Precision", "v_IoU", "v_Recall", "v_Precision", "v_IoU_Int",
    "3D_IoU", "3D_Recall", "3D_Precision",
)
VUE_POLICIES = ("first", "last", "union")
VUE_STEP_MS = 1000
_EPS = float(np.finfo(np.float64).eps)
_AREA_GROUPS = ((0.10, "<10%"), (0.30, "10%-30%"), (math.inf, ">30%"))
_VIDEO_LENGTH_GROUPS = ((60, "<1min"), (600, "1-10min"), (1800, "10-30min"))
_GT_LENGTH_GROUPS = ((3, "<3s"), (10, "3-10s"), (60, "10-60s"))


def quantize_ms(time_ms: int, step_ms: int = VUE_STEP_MS) -> int:
    """Round an integer millisecond time half up to ``step_ms`` (1499 -> 1000, 1500 -> 2000)."""
    return ((time_ms * 2 + step_ms) // (2 * step_ms)) * step_ms


def round_half_up_second(t: float) -> int:
    """Seconds -> the 1 s bin (1.499 s -> 1, 1.5 s -> 2), via the nearest whole millisecond."""
    return quantize_ms(int(round(t * 1000))) // VUE_STEP_MS


def _sanitize(box: Sequence[float]) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = (float(v) for v in box)
    if x0 > x1:
        x0, x1 = x1, x0
    if y0 > y1:
        y0, y1 = y1, y0
    return tuple(max(0.0, min(1.0, v)) for v in (x0, y0, x1, y1))  # type: ignore[return-value]


def build_tube(
    rows: Iterable[tuple[int, Sequence[float]]], step_ms: int = VUE_STEP_MS
) -> dict[int, list[tuple[float, float, float, float]]]:
    """``(time_ms, box)`` rows in file order -> ``{quantised ms: [sanitised boxes in row order]}``.

    ``step_ms`` is the official evaluator's time bin (``SpatioTemporalEvaluator(step_ms=1000)``)."""
    slices: dict[int, list] = {}
    for time_ms, box in rows:
        if len(box) != 4 or any(math.isnan(float(v)) for v in box):
            continue  # the official CSV reader drops rows with a NaN field
        slices.setdefault(quantize_ms(int(time_ms), step_ms), []).append(_sanitize(box))
    return slices


def union_area(rects: Sequence[Sequence[float]]) -> float:
    """Area covered by axis-aligned rectangles: vertical strips between distinct x edges, y-intervals merged."""
    if not rects:
        return 0.0
    xs = sorted({x for r in rects for x in (r[0], r[2])})
    area = 0.0
    for left, right in zip(xs, xs[1:]):
        width = right - left
        if width <= 0:
            continue
        spans = sorted((r[1], r[3]) for r in rects if not (r[2] <= left or r[0] >= right))
        if not spans:
            continue
        covered = 0.0
        lo, hi = spans[0]
        for a, b in spans[1:]:
            if a > hi:
                covered += hi - lo
                lo, hi = a, b
            elif b > hi:
                hi = b
        covered += hi - lo
        area += covered * width
    return area


def _region_overlap(a: Sequence, b: Sequence) -> tuple[float, float, float, float]:
    """(inter, union, area_a, area_b) of two regions given as rectangle lists."""
    area_a, area_b = union_area(a), union_area(b)
    if not a or not b:
        return 0.0, area_a + area_b, area_a, area_b
    pieces = []
    for ra in a:
        for rb in b:
            x0, y0 = max(ra[0], rb[0]), max(ra[1], rb[1])
            x1, y1 = min(ra[2], rb[2]), min(ra[3], rb[3])
            if x1 > x0 and y1 > y0:
                pieces.append((x0, y0, x1, y1))
    inter = union_area(pieces)
    return inter, area_a + area_b - inter, area_a, area_b


def _ratio(num: float, den: float, count: int) -> float | None:
    return None if count == 0 else float(num / den)


def compare_tubes(gt: Mapping[int, list], pred: Mapping[int, list], policy: str = "first") -> dict[str, float | None]:
    """The ten metrics of one query from two binned tubes (see the module docstring)."""
    if policy not in VUE_POLICIES:
        raise ValueError(f"multi_boxes_policy must be one of {VUE_POLICIES}, got {policy!r}")
    times = gt.keys() | pred.keys()
    if not times:
        raise ValueError("both tubes are empty")
    inter_l, union_l, a_l, b_l = [], [], [], []
    for t in times:
        sa, sb = gt.get(t, []), pred.get(t, [])
        if policy == "first":
            sa, sb = sa[:1], sb[:1]
        elif policy == "last":
            sa, sb = sa[-1:], sb[-1:]
        inter, union, area_a, area_b = _region_overlap(sa, sb)
        inter_l.append(inter)
        union_l.append(union)
        a_l.append(area_a)
        b_l.append(area_b)
    inter, union = np.asarray(inter_l), np.asarray(union_l)
    area_a, area_b = np.asarray(a_l), np.asarray(b_l)
    n_a, n_b = int((area_a > 0).sum()), int((area_b > 0).sum())
    n_i = int(((area_a > 0) & (area_b > 0)).sum())
    n_u = int(((area_a > 0) | (area_b > 0)).sum())
    iou_sum = float((inter / (union + _EPS)).sum())
    inter_sum = float(inter.sum())
    return {
        "t_IoU": _ratio(n_i, n_u, n_u),
        "t_Recall": _ratio(n_i, n_a, n_a),
        "t_Precision": _ratio(n_i, n_b, n_b),
        "v_IoU": _ratio(iou_sum, n_u, n_u),
        "v_Recall": _ratio(iou_sum, n_a, n_a),
        "v_Precision": _ratio(iou_sum, n_b, n_b),
        "v_IoU_Int": _ratio(iou_sum, n_i, n_i),
        "3D_IoU": _ratio(inter_sum, float(union.sum()) + _EPS, n_u),
        "3D_Recall": _ratio(inter_sum, float(area_a.sum()) + _EPS, n_a),
        "3D_Precision": _ratio(inter_sum, float(area_b.sum()) + _EPS, n_b),
    }


def vue_stg_scores(
    gt_tube: Iterable[tuple[float, Sequence[float]]],
    pred_tube: Iterable[tuple[float, Sequence[float]]],
    policy: str = "first",
) -> dict[str, float | None]:
    """The VUE-STG metrics of one query from ``(time_s, normalised xyxy)`` lists, in row order."""
    g = build_tube((int(round(float(t) * 1000)), b) for t, b in gt_tube)
    p = build_tube((int(round(float(t) * 1000)), b) for t, b in pred_tube)
    return compare_tubes(g, p, policy)


def _group(value: float | None, bins: tuple) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    for upper, label in bins:
        if value < upper:
            return label
    return None


def _rows_of(boxes: Mapping[int, Sequence[float]], q: GroundingQuery) -> list[tuple[int, list[float]]]:
    """Frame-keyed pixel boxes -> ``(time_ms, normalised box)`` rows in frame order."""
    items = sorted(boxes.items())
    if not items:
        return []
    normalised = normalize_boxes([b for _, b in items], q.width or 1, q.height or 1).tolist()
    return [(int(round(frame_seconds(f, q.fps) * 1000)), b) for (f, _), b in zip(items, normalised)]


def _native_rows(extra: Mapping[str, Any]) -> list[tuple[int, list[float]]] | None:
    """``extra["vue_rows"]``: ``[[time_ms, x0, y0, x1, y1], ...]`` as read from a VUE-STG CSV (file order)."""
    rows = extra.get("vue_rows")
    if rows is None:
        return None
    return [(int(r[0]), [float(v) for v in r[1:5]]) for r in rows]


def score_vue_stg(
    queries: Sequence[GroundingQuery],
    preds: Sequence[GroundingPrediction | None],
    policy: str = "first",
    other: dict | None = None,
) -> list[dict]:
    """Per-query VUE-STG rows plus ``avg_area`` / ``gt_length`` / ``video_length`` and their groups.

    ``other["vue_step_ms"]`` sets the time bin (default 1000 ms, the official setting)."""
    other = other if other is not None else {}
    step = int(other.get("vue_step_ms") or VUE_STEP_MS)
    rows = []
    for q, p in zip(queries, preds):
        if not q.fps:
            raise AnnotationError("vue_stg query needs a positive fps", entry=f"qid {q.qid}")
        gt_rows = _native_rows(q.extra)
        gt = build_tube(gt_rows if gt_rows is not None else _rows_of(q.boxes, q), step)
        pred_rows = _native_rows(p.extra) if p is not None else None
        if pred_rows is None:
            pred_rows = _rows_of(p.boxes, q) if p is not None and p.boxes else []
        pred = build_tube(pred_rows, step)
        try:
            row: dict[str, Any] = compare_tubes(gt, pred, policy)
        except ValueError:
            other["crash"] = other.get("crash", 0) + 1  # both tubes empty: the official asserts
            row = dict.fromkeys(VUE_METRICS)
        areas = box_area(np.reshape([b for boxes in gt.values() for b in boxes], (-1, 4))).tolist()
        avg_area = sum(areas) / len(areas) if areas else 0.0
        gt_length = sum(1 for boxes in gt.values() if boxes)
        duration = q.extra.get("video_duration")
        video_length = float(duration) if duration is not None else (q.num_frames / q.fps if q.num_frames else None)
        row.update(
            {
                "avg_area": avg_area,
                "gt_length": gt_length,
                "video_length": video_length,
                "area_group": _group(avg_area, _AREA_GROUPS),
                "video_length_group": _group(video_length, _VIDEO_LENGTH_GROUPS),
                "gt_length_group": _group(gt_length, _GT_LENGTH_GROUPS),
            }
        )
        rows.append(row)
    return rows


def vue_group_summary(rows: Sequence[Mapping]) -> dict[str, float | None]:
    """``summarize_and_save_eval_simple``: the metric means per object size, video duration and GT duration."""
    out: dict[str, float | None] = {}
    for column, label in (("area_group", "object_size"), ("video_length_group", "video_duration"),
                          ("gt_length_group", "gt_duration")):
        groups: dict[str, list] = {}
        for r in rows:
            groups.setdefault(str(r.get(column)), []).append(r)
        for value, sub in sorted(groups.items()):
            out[f"{label}[{value}]_num_queries"] = len(sub)
            for m in VUE_METRICS:
                vals = [r[m] for r in sub if r.get(m) is not None]
                out[f"{label}[{value}]_{m}"] = math.fsum(vals) / len(vals) if vals else None
    return out


register_protocol(
    ProtocolSpec(
        "vue_stg",
        lambda qs, ps, ctx: score_vue_stg(qs, ps, ctx.other.get("vue_multi_boxes_policy", "first"), ctx.other),
        lambda thresholds: [(k, k) for k in VUE_METRICS],
        extra_keys=("vue_rows",),
        group_summary=lambda rows, ctx: vue_group_summary(rows),
    )
)
