"""Conversions between stvg's :class:`GroundingQuery` / :class:`GroundingPrediction` and FiftyOne labels.

Dataset layout (one sample per video by default; ``one_sample_per_query=True`` flattens):

* ``<gt>_spans``: ``TemporalDetections``, one span per query labelled with the GT prefix (``gt``),
  attributes ``qid``, ``query``; ``<gt>_span``: the same span as a ``TemporalDetection`` when the sample
  holds one query, written only when asked (``single_span_fields``: it duplicates ``<gt>_spans``);
* ``frames.<gt>``: ``Detections``, one box per query tube per frame labelled ``gt``, the same
  ``fo.Instance`` on every frame of a tube, attributes ``qid``, ``query``;
* ``qids`` / ``queries``: the sample's query ids and texts (lists); flattened samples also get ``qid``
  and ``query`` strings; ``<gt>_queries``: each query's non-box fields (fps, seconds span, qtype,
  ``extra``), what the metric protocols need beyond the labels;
* predictions ``<p>_spans`` / ``<p>_span`` / ``frames.<p>`` mirror the GT layout (labelled with the
  run's name ``<p>``), plus
  ``<p>_meta`` (each answer's exact span, raw text, parse/decode status), ``<p>_confidence`` (mean)
  and ``<p>_error`` (decode error of the sample, else None).

FiftyOne frames are 1-based and spans inclusive: stvg frame ``f`` (0-based) is FiftyOne frame ``f + 1``
and the span ``[s, e)`` is ``support=[s + 1, e]``. Boxes are relative ``[x, y, w, h]`` of the video
size, chosen so that converting back gives the original absolute ``xyxy`` bit for bit (see
:func:`to_relative`), so scores computed from a dataset equal those computed from the JSONL files.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import fiftyone as fo

from stvg_plugin.data import GroundingPrediction, GroundingQuery, StvgError
from stvg_plugin.util.box_ops import scale_boxes, xywh_to_xyxy

TARGET = "target"
FIELD_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# built-in or layout fields a prediction / evaluation may never take
RESERVED = frozenset(
    {"id", "filepath", "tags", "metadata", "media_type", "created_at", "last_modified_at", "frames",
     "qid", "qids", "query", "queries", "frame_number", "support", "sample_id"}
)  # fmt: skip


class FieldError(StvgError, ValueError):
    """An invalid or conflicting field name; raised before anything is written."""


def check_name(name: Any, what: str = "field") -> str:
    if not isinstance(name, str) or not FIELD_RE.match(name):
        raise FieldError(f"{what} {name!r} is not a valid name (must match {FIELD_RE.pattern})")
    if name in RESERVED:
        raise FieldError(f"{what} {name!r} is reserved")
    return name


@dataclass(frozen=True)
class _SpanFields:
    """The field layout shared by GT and prediction runs: ``<base>_span``, ``<base>_spans``, ``frames.<base>``."""

    base: str

    @property
    def span(self) -> str:
        return f"{self.base}_span"

    @property
    def spans(self) -> str:
        return f"{self.base}_spans"

    @property
    def frames(self) -> str:
        return self.base


@dataclass(frozen=True)
class GtFields(_SpanFields):
    """Names of the ground-truth fields for GT prefix ``gt``."""

    @property
    def queries(self) -> str:
        return f"{self.base}_queries"

    def sample_fields(self) -> tuple[str, ...]:
        return (self.span, self.spans, self.queries)


@dataclass(frozen=True)
class PredFields(_SpanFields):
    """Names of the fields a prediction run writes for prefix ``base``."""

    @property
    def meta(self) -> str:
        return f"{self.base}_meta"

    @property
    def confidence(self) -> str:
        return f"{self.base}_confidence"

    @property
    def error(self) -> str:
        return f"{self.base}_error"

    def sample_fields(self) -> tuple[str, ...]:
        return (self.span, self.spans, self.confidence, self.error, self.meta)


def check_pred_vs_gt(pred: str, gt: str) -> tuple[PredFields, GtFields]:
    """Refuse a prediction prefix whose fields would overwrite ground truth (checked before any write)."""
    check_name(pred, "prediction field")
    check_name(gt, "ground-truth field")
    p, g = PredFields(pred), GtFields(gt)
    if pred == gt:
        raise FieldError(f"prediction field {pred!r} equals the ground-truth field")
    clash = (set(p.sample_fields()) | {p.frames}) & (set(g.sample_fields()) | {g.frames})
    if clash:
        raise FieldError(f"prediction field {pred!r} would overwrite ground-truth field(s) {sorted(clash)}")
    return p, g


# --------------------------------------------------------------------------- boxes


def _exact_ratio(estimate: float, target: float, rebuild) -> float:
    """The float nearest ``estimate`` (within 4 ulps) for which ``rebuild(r) == target``, else ``estimate``."""
    if rebuild(estimate) == target:
        return estimate
    lo = hi = estimate
    for _ in range(4):
        lo, hi = math.nextafter(lo, -math.inf), math.nextafter(hi, math.inf)
        if rebuild(lo) == target:
            return lo
        if rebuild(hi) == target:
            return hi
    return estimate


def to_relative(box: Sequence[float], width: float, height: float) -> list[float]:
    """Absolute ``[x1, y1, x2, y2]`` -> FiftyOne ``[x, y, w, h]`` that :func:`to_absolute` maps back exactly."""
    x1, y1, x2, y2 = (float(v) for v in box)
    bx = _exact_ratio(x1 / width, x1, lambda r: r * width)
    by = _exact_ratio(y1 / height, y1, lambda r: r * height)
    ax, ay = bx * width, by * height
    bw = _exact_ratio((x2 - ax) / width, x2, lambda r: ax + r * width)
    bh = _exact_ratio((y2 - ay) / height, y2, lambda r: ay + r * height)
    return [bx, by, bw, bh]


def to_absolute(bbox: Sequence[float], width: float, height: float) -> list[float]:
    """FiftyOne relative ``[x, y, w, h]`` -> absolute ``[x1, y1, x2, y2]`` (``x2 = x * W + w * W``)."""
    return xywh_to_xyxy(scale_boxes(bbox, width, height)).tolist()


def make_detection(box: Sequence[float], width: float, height: float, label: str = TARGET, **attrs: Any) -> fo.Detection:
    """A detection of an absolute xyxy box (``label``: the GT prefix or the run that drew it).

    ~4% of float boxes have no relative form that maps back bit for bit (``r * W`` skips values);
    those also keep ``abs_box``, used on the way back only while the box is unedited.
    """
    rel = to_relative(box, width, height)
    box = [float(v) for v in box]
    if to_absolute(rel, width, height) != box:
        attrs["abs_box"] = box
    return fo.Detection(label=label, bounding_box=rel, **attrs)


def detection_box(det: fo.Detection, width: float, height: float) -> list[float]:
    """Absolute xyxy of a detection written by :func:`make_detection` (or edited / added by hand)."""
    exact = det["abs_box"] if det.has_field("abs_box") else None
    if exact is not None and to_relative(exact, width, height) == list(det.bounding_box):
        return [float(v) for v in exact]
    return to_absolute(det.bounding_box, width, height)


def _size(sample_meta: Any, fallback: Mapping | None = None) -> tuple[float, float]:
    w = getattr(sample_meta, "frame_width", None) if sample_meta is not None else None
    h = getattr(sample_meta, "frame_height", None) if sample_meta is not None else None
    if not w or not h:
        w, h = (fallback or {}).get("width"), (fallback or {}).get("height")
    if not w or not h:
        raise StvgError("sample has no frame size (metadata.frame_width/height); import it with import_benchmark")
    return float(w), float(h)


# --------------------------------------------------------------------------- metadata


def video_metadata(path: str, fps: float, num_frames: int, width: int, height: int) -> fo.VideoMetadata:
    """``fo.VideoMetadata`` from known facts (no ffprobe needed); size/mime from the file when present."""
    import mimetypes
    import os

    size = os.path.getsize(path) if os.path.isfile(path) else None
    return fo.VideoMetadata(
        size_bytes=size,
        mime_type=mimetypes.guess_type(path)[0] or "video/mp4",
        frame_width=int(width),
        frame_height=int(height),
        frame_rate=float(fps),
        total_frame_count=int(num_frames),
        duration=float(num_frames) / float(fps) if fps else None,
    )


# --------------------------------------------------------------------------- ground truth


def _span_support(span: Sequence[int] | None) -> list[int] | None:
    """0-based end-exclusive ``[s, e)`` -> FiftyOne ``[s + 1, e]``; None for an empty span."""
    if span is None or int(span[1]) <= int(span[0]):
        return None
    return [int(span[0]) + 1, int(span[1])]


def query_record(q: GroundingQuery) -> dict[str, Any]:
    """What ``<gt>_queries`` keeps of a query: everything but the boxes (those live in ``frames.<gt>``)."""
    d = q.to_json()
    d.pop("boxes", None)
    return d


def gt_labels(queries: Sequence[GroundingQuery], width: float, height: float, label: str = TARGET):
    """Sample-level and frame-level GT labels of the queries of one sample.

    Returns ``(sample_fields: dict, frames: {frame_number: [fo.Detection, ...]})``.
    """
    spans, frames = [], {}
    for q in queries:
        sup = _span_support(q.span_frames)
        if sup is not None:
            spans.append(fo.TemporalDetection(label=label, support=sup, qid=q.qid, query=q.query))
        inst = fo.Instance()
        for f, box in sorted(q.boxes.items()):
            det = make_detection(box, width, height, label=label, instance=inst, qid=q.qid, query=q.query)
            frames.setdefault(int(f) + 1, []).append(det)
    fields = {"spans": fo.TemporalDetections(detections=spans), "span": spans[0] if len(queries) == 1 and spans else None}
    return fields, frames


def gt_sample(
    video: str, queries: Sequence[GroundingQuery], metadata: fo.VideoMetadata, gt: GtFields, flat: bool,
    single_span: bool = False,
) -> fo.Sample:
    """One ``fo.Sample`` holding ``queries`` (all of one video) with the layout of the module docstring."""
    fields, frames = gt_labels(queries, metadata.frame_width, metadata.frame_height, label=gt.base)
    sample = fo.Sample(filepath=video, metadata=metadata)
    sample["qids"] = [q.qid for q in queries]
    sample["queries"] = [q.query for q in queries]
    sample[gt.queries] = [query_record(q) for q in queries]
    sample[gt.spans] = fields["spans"]
    if single_span and fields["span"] is not None:
        sample[gt.span] = fields["span"]
    if flat:
        sample["qid"] = queries[0].qid
        sample["query"] = queries[0].query
    for fn, dets in frames.items():
        sample.frames[fn][gt.frames] = fo.Detections(detections=dets)
    return sample


def _frame_boxes(frame_numbers: Sequence[int] | None, frame_labels: Sequence[Any] | None, width: float, height: float):
    """``{qid: {frame0: xyxy}}`` from one sample's ``frames.<field>`` values."""
    out: dict[str, dict[int, list[float]]] = {}
    for fn, dets in zip(frame_numbers or [], frame_labels or []):
        if dets is None:
            continue
        for det in dets.detections:
            qid = det.get_field("qid") if det.has_field("qid") else None
            if qid is None:
                continue
            out.setdefault(str(qid), {})[int(fn) - 1] = detection_box(det, width, height)
    return out


def _spans_by_qid(spans: Any) -> dict[str, list[int]]:
    out = {}
    for det in getattr(spans, "detections", None) or []:
        if det.has_field("qid") and det["qid"] is not None:
            out[str(det["qid"])] = [int(det.support[0]) - 1, int(det.support[1])]
    return out


def queries_from_view(view, gt: str = "gt") -> list[GroundingQuery]:
    """Rebuild the GT queries of a view from its labels (spans and boxes from the labels, the rest from ``<gt>_queries``).

    Edited GT spans / boxes therefore count; a query whose span label was deleted keeps no span.
    """
    g = GtFields(gt)
    ids, paths, metas, records, spans, fns, labels = view.values(
        ["id", "filepath", "metadata", g.queries, g.spans, "frames.frame_number", f"frames.{g.frames}"]
    )
    out = []
    for sid, path, meta, recs, sp, fn, lab in zip(ids, paths, metas, records, spans, fns, labels):
        if not recs:
            continue
        w, h = _size(meta, recs[0])
        boxes = _frame_boxes(fn, lab, w, h)
        by_qid = _spans_by_qid(sp)
        for rec in recs:
            d = dict(rec)
            d["video"] = path
            d["span_frames"] = by_qid.get(str(d["qid"]))
            if d["span_frames"] is None:
                d["span_s"] = None
            d["boxes"] = boxes.get(str(d["qid"]), {})
            out.append(GroundingQuery.from_json(d, entry=f"sample {sid}"))
    return out


def sample_queries(view, gt: str = "gt", query_field: str = "query") -> list[tuple[str, list[GroundingQuery]]]:
    """``[(sample_id, queries)]`` to ground: from ``<gt>_queries``, else a plain text field (``query_field``).

    The second form lets the plugin ground any video dataset: qid = sample id (``:i`` per extra query).
    """
    g = GtFields(gt)
    schema = view.get_field_schema()
    names = ["id", "filepath", "metadata"]
    if g.queries in schema:
        names.append(g.queries)
    elif query_field in schema:
        names.append(query_field)
    else:
        raise FieldError(f"samples have neither '{g.queries}' (import_benchmark) nor a '{query_field}' text field")
    ids, paths, metas, raw = view.values(names)
    out = []
    for sid, path, meta, val in zip(ids, paths, metas, raw):
        qs = []
        if g.queries in schema:
            for rec in val or []:
                d = {k: v for k, v in dict(rec).items() if k not in ("span_frames", "span_s")}
                d["video"] = path
                qs.append(GroundingQuery.from_json(d, entry=f"sample {sid}"))
        else:
            texts = [val] if isinstance(val, str) else list(val or [])
            for i, text in enumerate(texts):
                qs.append(
                    GroundingQuery(
                        qid=sid if i == 0 else f"{sid}:{i}",
                        video=path,
                        query=str(text),
                        fps=float(getattr(meta, "frame_rate", 0) or 0),
                        num_frames=int(getattr(meta, "total_frame_count", 0) or 0),
                        width=int(getattr(meta, "frame_width", 0) or 0),
                        height=int(getattr(meta, "frame_height", 0) or 0),
                    )
                )
        out.append((sid, qs))
    return out


# --------------------------------------------------------------------------- predictions


def prediction_record(p: GroundingPrediction) -> dict[str, Any]:
    d = p.to_json()
    d.pop("boxes", None)
    return d


def prediction_labels(
    preds: Sequence[GroundingPrediction], width: float, height: float, fps: float = 0.0, num_frames: int | None = None,
    label: str = TARGET,
) -> tuple[dict[str, Any], dict[int, fo.Detections]]:
    """Sample-field values and ``{frame_number: Detections}`` for the predictions of one sample.

    A span given only in seconds is shown with :func:`stvg_plugin.data.seconds_to_span`; the exact
    answer (frames and/or seconds) stays in ``<p>_meta``, which is what evaluation reads back.
    """
    from stvg_plugin.data import seconds_to_span

    spans, frames = [], {}
    confs = [p.confidence for p in preds if p.confidence is not None]
    for p in preds:
        span = p.span_frames
        if span is None and p.span_s is not None and fps > 0:
            sp = seconds_to_span(p.span_s[0], p.span_s[1], fps, num_frames)
            span = (sp.start, sp.end)
        sup = _span_support(span)
        if sup is not None:
            spans.append(fo.TemporalDetection(label=label, support=sup, confidence=p.confidence, qid=p.qid))
        if p.boxes:
            inst = fo.Instance()
            for f, box in p.boxes.items():
                det = make_detection(box, width, height, label=label, instance=inst, qid=p.qid, confidence=p.confidence)
                frames.setdefault(int(f) + 1, []).append(det)
    errors = sorted({p.error for p in preds if p.error})
    values = {
        "spans": fo.TemporalDetections(detections=spans),
        "span": spans[0] if len(preds) == 1 and spans else None,
        "confidence": math.fsum(confs) / len(confs) if confs else None,
        "error": "; ".join(errors) if errors else None,
        "meta": [prediction_record(p) for p in preds],
    }
    return values, {fn: fo.Detections(detections=d) for fn, d in frames.items()}


_DOC_TEMPLATES: dict[str, dict] = {}


def _template(kind: str) -> dict:
    """The stored form of an empty label, taken from FiftyOne itself (so it follows FiftyOne's format)."""
    if kind not in _DOC_TEMPLATES:
        label = fo.Detections() if kind == "Detections" else fo.Detection(label=TARGET, bounding_box=[0, 0, 0, 0])
        doc = label.to_mongo().to_dict()
        doc.pop("_id", None)
        _DOC_TEMPLATES[kind] = doc
    return _DOC_TEMPLATES[kind]


def prediction_frame_docs(
    preds: Sequence[GroundingPrediction], width: float, height: float, label: str = TARGET
) -> dict[int, dict[str, Any]]:
    """``{frame_number: stored Detections document}``: the same content as :func:`prediction_labels`'s frames,
    built as plain documents (~20x cheaper than validated ``fo.Detection`` objects; for bulk writes with
    ``set_values(..., validate=False)``). Values are checked here instead: finite numbers, 4 per box.
    """
    from bson import ObjectId

    det_t, dets_t = _template("Detection"), _template("Detections")
    frames: dict[int, list[dict]] = {}
    for p in preds:
        if not p.boxes:
            continue
        inst = {"_id": ObjectId(), "_cls": "Instance"}
        conf = float(p.confidence) if p.confidence is not None else None
        for f, box in p.boxes.items():
            if len(box) != 4 or not all(math.isfinite(float(v)) for v in box):
                raise StvgError(f"prediction {p.qid}: frame {f} has an invalid box {box!r}")
            rel = to_relative(box, width, height)
            d = dict(det_t, _id=ObjectId(), label=label, bounding_box=rel, confidence=conf, instance=inst, qid=p.qid)
            d["tags"] = []
            if to_absolute(rel, width, height) != [float(v) for v in box]:
                d["abs_box"] = [float(v) for v in box]
            frames.setdefault(int(f) + 1, []).append(d)
    return {fn: dict(dets_t, _id=ObjectId(), detections=ds) for fn, ds in frames.items()}


def predictions_from_view(view, pred: str) -> list[GroundingPrediction]:
    """Rebuild the predictions of run ``pred`` (exact spans from ``<p>_meta``, boxes from ``frames.<p>``)."""
    p = PredFields(pred)
    schema = view.get_field_schema()
    if p.meta not in schema:
        return []
    ids, metas, records, fns, labels = view.values(
        ["id", "metadata", p.meta, "frames.frame_number", f"frames.{p.frames}"]
    )
    out = []
    for sid, meta, recs, fn, lab in zip(ids, metas, records, fns, labels):
        if not recs:
            continue
        w, h = _size(meta)
        boxes = _frame_boxes(fn, lab, w, h)
        for rec in recs:
            d = dict(rec)
            d["boxes"] = boxes.get(str(d["qid"]), {})
            out.append(GroundingPrediction.from_json(d, entry=f"sample {sid}"))
    return out
