"""Spatio-temporal grounding protocols (TubeDETR and its variants), vectorised across queries.

All queries of a batch become one flat array of (query, frame) rows over their frame universes;
per-query sums are ``np.bincount``s. The per-query numbers are the single source of truth: the
summary is their mean, and :func:`stvg_plugin.metrics.score_query` runs the same code on one query.

Protocols (metrics.md §1-§2; sources and commits in docs/PROTOCOLS.md). Each one gives its
official evaluator's numbers on every input that evaluator accepts:

* ``tubedetr`` - TubeDETR ``datasets/hcstvg_eval.py`` / ``vidstg_eval.py``, the default. Universe =
  TubeDETR's 5 fps sampling of ``extra["segment"]`` (default ``[0, num_frames)``) capped at 200; GT
  span/box frames shifted by ``extra["tubedetr_frame_offset"]`` (HC-STVG: TubeDETR reads the 1-based
  ``st_frame`` as a 0-based index, so ``st_frame`` 0 is valid). tIoU on the raw frame axis;
  ``vIoU = sum_{S_i} IoU / max(|S_u|, 1)``; ``gt_vIoU`` = mean IoU over GT-span frames of the universe;
  strict ``>`` thresholds. The predicted span is read as given (a reversed one has no intersection:
  ``max_start`` / ``min_end`` on the raw ``sted``); box IoU is ``util/box_ops.pairwise_iou`` on the
  boxes as given (swapped corners -> no intersection -> 0). Follows the fixed evaluator
  (``max_end = max(ends)``). A missing prediction or frame raises there; here it scores 0, counted.
* ``official_hcstvg`` - HC-STVG ``eval_hcvg.py``: inclusive spans; the loop runs over the GT frames
  that have a GT box and a predicted box, **whatever the predicted span says** (l.58); denominator
  ``max(ends) - min(starts) + 1`` on the raw (possibly reversed) values (l.62); ``tIoU = #those
  frames / denominator`` (l.65), so a zero-area predicted box still counts there; ``iou2d`` returns 0
  when the intersection is empty (l.17); a missing video scores 0 and is averaged (l.50).
* ``stcat``, ``cg_stvg``, ``llava_next_stvg`` - STCAT / CG-STVG ``datasets/evaluation/hcstvg_eval.py``
  and ``vidstg_eval.py``: every frame of the segment; the inclusive GT end is read as exclusive for
  tIoU / vIoU (``range(max_start, min_end)``), but ``gt_vIoU`` averages every GT box frame, the last
  included (``for fid in self.vid2box``, ``/ len(vid2box)``); queries without prediction are left out
  of the means (the loop runs over the predictions); a missing frame raises in STCAT (0 here) and is
  skipped as IoU 0 in CG-STVG; ``cg_stvg`` clips GT x2/y2 to the image; ``llava_next_stvg`` counts
  S_u / S_i inclusively (+1). VidSTG: per-``qtype`` means (the engine's ``<qtype>_*`` keys). The
  segment is ``extra["segment"]`` for VidSTG-style queries and ``[0, num_frames)`` for queries
  carrying ``tubedetr_frame_offset`` (HC-STVG); no frame offset is applied (STCAT uses st_frame - 1).

Shared: a frame without a predicted box scores IoU 0 (``box_fill="none"``), or is filled from the
predicted boxes inside the predicted span (``nearest`` / ``linear``, STCAT-style); boxes outside the
predicted span are never invented. With ``repair=True`` (never official) predicted boxes go through
the ``sanitize_box`` rule (swapped corners fixed, NaN / zero-area rejected, counted) and reversed
spans are swapped (counted). A zero-union IoU (the reference's NaN, e.g. a NaN box) is scored 0 and
counted in ``num_nan`` instead of turning the official mean into NaN. A GT-span frame of the
universe without a GT box scores IoU 0 and is counted (TubeDETR would raise).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from operator import is_not, itemgetter

import numpy as np

from stvg_plugin.data import AnnotationError, GroundingPrediction, GroundingQuery, seconds_to_frame_spans
from stvg_plugin.metrics.boxes import RaggedBoxes, gather_boxes_many, marshal_records
from stvg_plugin.metrics.frames import TUBEDETR_MAX_LEN, SampledUniverse, dense_universe, seconds_to_universe_span
from stvg_plugin.metrics.protocols import ProtocolSpec, ScoringContext, register_protocol
from stvg_plugin.metrics.rows import row_tail
from stvg_plugin.util.box_ops import BoxRepairStats, interval_iou_array, pairwise_iou

# Queries are scored in chunks of about this many (upper-bound) rows: the per-row arrays of a chunk
# (a few MB) stay in cache and reuse freed memory; one chunk for all queries faults in fresh pages
# for every temporary and is ~10 % slower on 10k queries.
_MAX_ROWS_PER_CHUNK = 262_144
_NO_SPAN = (0, 0)  # a missing prediction's span


@dataclass(frozen=True)
class StvgSpec:
    """What distinguishes one STVG evaluator from another (see module docstring)."""

    name: str
    dense: bool = False
    use_frame_offset: bool = True
    drop_gt_last_frame: bool = False
    inclusive_overlap: bool = False
    clip_gt_to_image: bool = False
    official_hcstvg: bool = False
    averages_predicted_only: bool = False  # the official loop runs over the predictions: no prediction, not averaged
    default: bool = False  # the protocol an STVG query gets when none is named


STVG_SPECS = {
    "tubedetr": StvgSpec("tubedetr", default=True),
    "official_hcstvg": StvgSpec("official_hcstvg", use_frame_offset=False, official_hcstvg=True),
    "stcat": StvgSpec(
        "stcat", dense=True, use_frame_offset=False, drop_gt_last_frame=True, averages_predicted_only=True
    ),
    "cg_stvg": StvgSpec(
        "cg_stvg", dense=True, use_frame_offset=False, drop_gt_last_frame=True, clip_gt_to_image=True,
        averages_predicted_only=True,
    ),
    "llava_next_stvg": StvgSpec(
        "llava_next_stvg", dense=True, use_frame_offset=False, drop_gt_last_frame=True, inclusive_overlap=True,
        averages_predicted_only=True,
    ),
}


@dataclass
class StvgCounters:
    """Things the summary reports instead of hiding."""

    nan_frames: int = 0
    nan_queries: int = 0
    gt_frames_without_box: int = 0
    no_span: int = 0
    reversed_spans: int = 0  # predicted frame spans with end < start, scored as given (repair off)
    repaired_spans: int = 0  # ... swapped into order (repair on)


def _segment(q: GroundingQuery, spec: StvgSpec) -> tuple[int, int]:
    seg = q.extra.get("segment")
    if spec.dense and q.extra.get("tubedetr_frame_offset"):
        seg = None
    if seg is None:
        return 0, int(q.num_frames)
    try:
        s, e = int(seg[0]), int(seg[1])
    except (TypeError, ValueError, IndexError):
        raise AnnotationError(f"extra['segment'] must be [begin, end), got {seg!r}", entry=f"qid {q.qid}") from None
    return s, e


def _int_pairs(values: list) -> np.ndarray | None:
    """``[(int(a), int(b)), ...]`` as an ``(n, 2)`` int64 array without a Python loop, else None.

    Pairs of plain ints are read through :func:`marshal_records`; otherwise ``np.fromiter`` into
    int64 converts each value as ``int()`` does and raises where ``int()`` (or the int64 range)
    would, so None (also for ``None`` entries or other lengths) sends the caller to its per-query
    path, which reproduces the exact errors and semantics.
    """
    if not values or not all(map(is_not, values, repeat(None))):  # `None in` would call ndarray.__eq__
        return None
    rec = marshal_records(values, 2, "i")
    if rec is not None:
        pairs = np.empty((len(values), 2), dtype=np.int64)
        pairs[:, 0] = rec["v0"]
        pairs[:, 1] = rec["v1"]
        return pairs
    try:
        if set(map(len, values)) != {2}:
            return None
        return np.fromiter(chain.from_iterable(values), dtype=np.int64, count=2 * len(values)).reshape(-1, 2)
    except (TypeError, ValueError, OverflowError):
        return None


def _segments(queries: Sequence[GroundingQuery], spec: StvgSpec) -> np.ndarray:
    """``(n, 2)`` evaluation segments (:func:`_segment` per query unless all are plain int pairs)."""
    extras = [q.extra for q in queries]
    raw = [e.get("segment") for e in extras]
    if spec.dense:
        raw = [None if e.get("tubedetr_frame_offset") else r for e, r in zip(extras, raw)]
    segs = _int_pairs(raw)
    if segs is None:
        segs = np.array([_segment(q, spec) for q in queries], dtype=np.int64).reshape(len(queries), 2)
    return segs


def _check_query(q: GroundingQuery) -> None:
    if q.span_frames is None:
        raise AnnotationError("stvg query has no ground-truth span_frames", entry=f"qid {q.qid}")
    if not q.fps or q.fps <= 0:
        raise AnnotationError(f"stvg query needs a positive fps, got {q.fps}", entry=f"qid {q.qid}")


def score_stvg(
    queries: Sequence[GroundingQuery],
    preds: Sequence[GroundingPrediction | None],
    spec: StvgSpec,
    thresholds: Sequence[float],
    box_fill: str,
    stats: BoxRepairStats,
    counters: StvgCounters,
    repair: bool = False,
) -> list[dict]:
    """Whole per-query rows (:mod:`~stvg_plugin.metrics.rows`): ``tIoU``, ``vIoU``, ``gt_vIoU``,
    ``vIoU@t``, ``gt_vIoU@t`` and the spans used, between the query's head and the prediction's tail."""
    out: list[dict] = []
    nq = len(queries)
    if spec.dense or spec.official_hcstvg:
        rows = np.fromiter((max(int(q.num_frames), 1) for q in queries), dtype=np.int64, count=nq)
    else:  # the sampled universe never has more rows than this
        rows = np.full(nq, TUBEDETR_MAX_LEN, dtype=np.int64)
    # a chunk ends at the first query that brings its rows to _MAX_ROWS_PER_CHUNK (always >= 1 query)
    total = np.cumsum(rows)
    start = 0
    while start < nq:
        before = int(total[start - 1]) if start else 0
        stop = int(np.searchsorted(total, before + _MAX_ROWS_PER_CHUNK, side="left")) + 1
        stop = min(max(stop, start + 1), nq)
        out.extend(
            _score_chunk(queries[start:stop], preds[start:stop], spec, thresholds, box_fill, stats, counters, repair)
        )
        start = stop
    return out


def _score_chunk(queries, preds, spec, thresholds, box_fill, stats, counters, repair) -> list[dict]:
    nq = len(queries)
    spans = [q.span_frames for q in queries]
    fps_list = [q.fps for q in queries]
    if None in spans or not all(f and f > 0 for f in fps_list):  # slow path names the first bad query
        for q in queries:
            _check_query(q)
    fps = np.array(fps_list, dtype=np.float64)
    segs = _segments(queries, spec)
    offset = np.zeros(nq, dtype=np.int64)
    if spec.use_frame_offset:
        raw_offset = [q.extra.get("tubedetr_frame_offset") for q in queries]
        if any(raw_offset):
            offset = np.fromiter((int(o or 0) for o in raw_offset), dtype=np.int64, count=nq)
    pairs = _int_pairs(spans)
    if pairs is None:
        pairs = np.stack([np.fromiter(map(itemgetter(k), spans), dtype=np.int64, count=nq) for k in (0, 1)], axis=1)
    gs = pairs[:, 0] + offset
    ge = pairs[:, 1] + offset
    ge_boxes = ge  # GT frames whose boxes gt_vIoU averages (STCAT / CG-STVG: every GT box, the last included)
    if spec.drop_gt_last_frame:
        ge_boxes = np.maximum(np.minimum(ge, segs[:, 1]), gs)
        ge = np.maximum(ge_boxes - 1, gs)
    pred_dicts = [p.boxes if p is not None else None for p in preds]
    has_pred = np.fromiter(map(is_not, preds, repeat(None, nq)), dtype=bool, count=nq)

    # ---- frame universe: all rows (dense protocols), or TubeDETR's sampling answered in closed form
    universe = None
    if spec.official_hcstvg:
        qi, fr = dense_universe(gs, ge)
    elif spec.dense:
        qi, fr = dense_universe(segs[:, 0], segs[:, 1])
    else:
        universe = SampledUniverse(fps, segs[:, 0], segs[:, 1])
        qi = fr = None

    # ---- predicted spans (frames direct; seconds mapped onto the universe)
    ps, pe, by_seconds, t0, t1 = _pred_spans(preds, nq, counters, repair)
    if by_seconds.any():
        if spec.official_hcstvg or spec.dense:
            sps, spe = seconds_to_frame_spans(fps, t0, t1)
        else:
            if qi is None:
                qi, fr = universe.rows()
            sps, spe = seconds_to_universe_span(qi, fr, fps, t0, t1, nq)
        ps = np.where(by_seconds, sps, ps)
        pe = np.where(by_seconds, spe, pe)

    # ---- boxes on the rows where a GT box matters (LLaVA_Next_STVG's inclusive S_i reaches the GT end frame)
    gt_hi = ge + 1 if spec.inclusive_overlap else ge
    if spec.drop_gt_last_frame:
        gt_hi = np.maximum(gt_hi, ge_boxes)
    if universe is not None:
        rq, rf = universe.rows_in(gs, gt_hi, has_pred)
    else:
        in_gt = (fr >= gs[qi]) & (fr < gt_hi[qi]) & has_pred[qi]
        rq, rf = qi[in_gt], fr[in_gt]
    gt_source = ([q.boxes for q in queries], offset, False)
    if box_fill == "none":
        (gbox, gfound), (pbox, pfound) = gather_boxes_many([gt_source, (pred_dicts, None, repair)], rq, rf, stats=stats)
    else:
        ((gbox, gfound),) = gather_boxes_many([gt_source], rq, rf)
    if spec.clip_gt_to_image:
        w = np.array([q.width or np.inf for q in queries], dtype=np.float64)[rq]
        h = np.array([q.height or np.inf for q in queries], dtype=np.float64)[rq]
        gbox[:, 2] = np.minimum(gbox[:, 2], w)
        gbox[:, 3] = np.minimum(gbox[:, 3], h)
    in_pred_row = (rf >= ps[rq]) & (rf < pe[rq])
    if box_fill != "none":
        all_pred = RaggedBoxes.from_dicts(pred_dicts, sanitize=repair, stats=stats, drop_non_finite=True)
        pbox, pfound = all_pred.lookup(rq, rf, "none")
        fbox, ffound = all_pred.restrict_to_spans(ps, pe).lookup(rq, rf, box_fill)
        use_fill = ~pfound & ffound & in_pred_row
        pbox[use_fill] = fbox[use_fill]
        pfound = pfound | use_fill
    counters.gt_frames_without_box += int(gfound.size - np.count_nonzero(gfound))
    both = gfound & pfound
    iou = pairwise_iou(pbox, gbox)
    if not both.all():
        iou[~both] = 0.0
    nan = np.isnan(iou)
    if nan.any():
        counters.nan_frames += int(nan.sum())
        counters.nan_queries += int(np.unique(rq[nan]).size)
        iou[nan] = 0.0
    if spec.drop_gt_last_frame:  # STCAT / CG-STVG: gt_vIoU over the GT's box frames (dict keys), last one included
        on_box = gfound & (rf < ge_boxes[rq])
        gt_count = np.bincount(rq[on_box], minlength=nq)
        gt_sum = np.bincount(rq[on_box], weights=iou[on_box], minlength=nq)
    else:
        gt_count = np.bincount(rq, minlength=nq)
        gt_sum = np.bincount(rq, weights=iou, minlength=nq)
    gt_viou = gt_sum / np.maximum(gt_count, 1)

    if spec.official_hcstvg:
        tiou, viou = _official_hcstvg(rq, iou, gfound & pfound, gs, ge, ps, pe, nq)
    else:
        tiou = interval_iou_array(gs, ge, ps, pe)
        viou = _universe_viou(universe, qi, fr, rq, rf, iou, gs, ge, ps, pe, nq, spec.inclusive_overlap)
    tiou[~has_pred] = 0.0
    viou[~has_pred] = 0.0
    gt_viou[~has_pred] = 0.0

    rows = []
    v_keys = [(f"vIoU@{th}", th) for th in thresholds]
    g_keys = [(f"gt_vIoU@{th}", th) for th in thresholds]
    name = spec.name
    for q, p, t, v, g, s0, s1, p0, p1 in zip(
        queries,
        preds,
        tiou.tolist(),
        viou.tolist(),
        gt_viou.tolist(),
        gs.tolist(),
        ge.tolist(),
        ps.tolist(),
        pe.tolist(),
    ):
        row = {"qid": q.qid, "qtype": q.qtype, "task": q.task, "protocol": name, "tIoU": t, "vIoU": v, "gt_vIoU": g}
        for key, th in v_keys:
            row[key] = 1.0 if v > th else 0.0
        for key, th in g_keys:
            row[key] = 1.0 if g > th else 0.0
        row["gt_span"] = [s0, s1]
        row["pred_span"] = [p0, p1] if p is not None else None
        row.update(row_tail(p))
        rows.append(row)
    return rows


def _pred_spans(preds, nq, counters, repair=False):
    """Predicted spans; a reversed one is swapped only with ``repair`` (the officials read it as given)."""
    spans = [p.span_frames if p is not None else _NO_SPAN for p in preds]
    pairs = _int_pairs(spans)
    if pairs is not None:  # every prediction has integer span_frames: no seconds, nothing to count
        zeros = np.zeros(nq, dtype=np.float64)
        if not repair:
            counters.reversed_spans += int(np.count_nonzero(pairs[:, 1] < pairs[:, 0]))
            return pairs[:, 0].copy(), pairs[:, 1].copy(), np.zeros(nq, dtype=bool), zeros, zeros.copy()
        counters.repaired_spans += int(np.count_nonzero(pairs[:, 1] < pairs[:, 0]))
        return pairs.min(axis=1), pairs.max(axis=1), np.zeros(nq, dtype=bool), zeros, zeros.copy()
    ps_list, pe_list = [0] * nq, [0] * nq  # Python lists: item assignment into numpy costs ~10x more
    by_seconds = np.zeros(nq, dtype=bool)
    t0 = np.zeros(nq, dtype=np.float64)
    t1 = np.zeros(nq, dtype=np.float64)
    for i, p in enumerate(preds):
        if p is None:
            continue
        span = p.span_frames
        if span is not None:
            a, b = int(span[0]), int(span[1])
            if b >= a or not repair:
                ps_list[i], pe_list[i] = a, b
                counters.reversed_spans += b < a
            else:
                ps_list[i], pe_list[i] = b, a
                counters.repaired_spans += 1
        elif p.span_s is not None:
            a, b = float(p.span_s[0]), float(p.span_s[1])
            if np.isfinite(a) and np.isfinite(b):
                by_seconds[i] = True
                t0[i], t1[i] = min(a, b), max(a, b)
            else:
                counters.no_span += 1
        else:
            counters.no_span += 1
    return np.array(ps_list, dtype=np.int64), np.array(pe_list, dtype=np.int64), by_seconds, t0, t1


def _universe_viou(universe, qi, fr, rq, rf, iou, gs, ge, ps, pe, nq, inclusive) -> np.ndarray:
    lo_u, hi_u = np.minimum(gs, ps), np.maximum(ge, pe)
    lo_i, hi_i = np.maximum(gs, ps), np.minimum(ge, pe)
    if inclusive:  # LLaVA_Next_STVG: [min_start, max_end] and [max_start, min_end] with inclusive ends
        hi_u, hi_i = hi_u + 1, hi_i + 1
    if universe is not None:
        union_count = universe.count_in(lo_u, hi_u)
    else:
        in_union = (fr >= lo_u[qi]) & (fr < hi_u[qi])
        union_count = np.bincount(qi[in_union], minlength=nq)
    in_inter = (rf >= lo_i[rq]) & (rf < hi_i[rq])
    inter_sum = np.bincount(rq[in_inter], weights=iou[in_inter], minlength=nq)
    return inter_sum / np.maximum(union_count, 1)


def _official_hcstvg(rq, iou, pfound, gs, ge, ps, pe, nq):
    """eval_hcvg.py: both tubes inclusive -> denominator = max(ends) - min(starts) + 1 (= exclusive form)."""
    denom = (np.maximum(ge, pe) - np.minimum(gs, ps)).astype(np.float64)
    with_box = np.bincount(rq[pfound], minlength=nq).astype(np.float64)
    iou_sum = np.bincount(rq[pfound], weights=iou[pfound], minlength=nq)
    safe = np.maximum(denom, 1.0)
    return with_box / safe, iou_sum / safe


# --------------------------------------------------------------------------- registration


def stvg_metric_names(thresholds: Sequence[float]) -> list[tuple[str, str]]:
    """``(per-query key, summary key)`` pairs of every STVG protocol."""
    names = [("tIoU", "m_tIoU"), ("vIoU", "m_vIoU")]
    names += [(f"vIoU@{t}", f"vIoU@{t}") for t in thresholds]
    return names + [("gt_vIoU", "gt_vIoU")] + [(f"gt_vIoU@{t}", f"gt_vIoU@{t}") for t in thresholds]


def _rows_with_prediction(idx: list[int], queries, preds, rows, lmms_compat) -> list[int]:
    """STCAT / CG-STVG / LLaVA_Next_STVG loop over the predictions (``for video_id in video_predictions``)."""
    return [i for i in idx if preds[i] is not None]


def _stvg_protocol(spec: StvgSpec) -> ProtocolSpec:
    def score(qs: Sequence[GroundingQuery], ps: Sequence[GroundingPrediction | None], ctx: ScoringContext):
        return score_stvg(qs, ps, spec, ctx.thresholds, ctx.box_fill, ctx.stats, ctx.counters, ctx.repair)

    return ProtocolSpec(
        spec.name,
        score,
        stvg_metric_names,
        default_for=("stvg",) if spec.default else (),
        whole_rows=True,
        summary_rows=_rows_with_prediction if spec.averages_predicted_only else None,
    )


for _spec in STVG_SPECS.values():
    register_protocol(_stvg_protocol(_spec))
