"""The dataset's ``stvg`` info and the typed fields of a prediction run: check, declare, clear, write.

Shared by the import, grounding, scoring and run-attaching modules. Writes are batched dict-form
``set_values`` (see docs/FIFTYONE.md for the measured speed-up over per-sample ``save()``); stale
values of the samples about to be written are cleared first, because dict writes merge frames.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import fiftyone as fo

from stvg_plugin.data import GroundingPrediction

from .app import apply_colors
from .labels import FieldError, GtFields, PredFields, check_pred_vs_gt, prediction_frame_docs, prediction_labels

INFO_KEY = "stvg"  # dataset.info[INFO_KEY]: benchmark, protocol, GT prefixes, evaluation summaries


def _info(ds: fo.Dataset) -> dict:
    return dict(ds.info.get(INFO_KEY) or {})


def _save_info(ds: fo.Dataset, info: dict) -> None:
    ds.info[INFO_KEY] = info
    ds.save()


def _gt_prefixes(ds: fo.Dataset, gt: str) -> list[str]:
    return sorted({gt, *(_info(ds).get("gt_fields") or [])})


def _check_writable(view, pred: str, gt: str) -> tuple[PredFields, GtFields]:
    """Prediction fields may not be, or overwrite, any GT field this dataset was imported with."""
    ds = view._dataset
    for g in _gt_prefixes(ds, gt):
        check_pred_vs_gt(pred, g)
    if view._is_patches or view._is_frames or view._is_clips:
        raise FieldError("run on the video samples (a dataset or a view of it), not on clips/patches/frames")
    return PredFields(pred), GtFields(gt)


def _declare(ds: fo.Dataset, pf: PredFields) -> None:
    """Create the prediction fields (typed), refusing existing fields of another type."""
    want = {
        pf.spans: dict(ftype=fo.EmbeddedDocumentField, embedded_doc_type=fo.TemporalDetections),
        pf.confidence: dict(ftype=fo.FloatField),
        pf.error: dict(ftype=fo.StringField),
        pf.meta: dict(ftype=fo.ListField, subfield=fo.DictField),
    }
    if _info(ds).get("single_span_fields"):  # asked at import: <p>_span duplicates <p>_spans for one-query samples
        want[pf.span] = dict(ftype=fo.EmbeddedDocumentField, embedded_doc_type=fo.TemporalDetection)
    schema = ds.get_field_schema()
    for name, spec in want.items():
        _declare_one(ds.add_sample_field, schema, name, spec)
    _declare_one(
        ds.add_frame_field, ds.get_frame_field_schema() or {}, pf.frames,
        dict(ftype=fo.EmbeddedDocumentField, embedded_doc_type=fo.Detections),
    )  # fmt: skip
    apply_colors(ds, list(_info(ds).get("gt_fields") or ["gt"]), pf.base)


def _declare_one(add, schema: dict, name: str, spec: dict) -> None:
    field = schema.get(name)
    if field is None:
        add(name, **spec)
        return
    ok = isinstance(field, spec["ftype"])
    if ok and "embedded_doc_type" in spec:
        ok = field.document_type is spec["embedded_doc_type"]
    if ok and "subfield" in spec:
        ok = isinstance(field.field, spec["subfield"])
    if not ok:
        raise FieldError(f"field {name!r} already exists with another type ({type(field).__name__}); pick another name")


def _mean(values: Iterable[float | None]) -> float | None:
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return math.fsum(vals) / len(vals) if vals else None


def _clear(ds: fo.Dataset, ids: Sequence[str], pf: PredFields) -> None:
    if not ids:
        return
    sub = ds.select(list(ids))
    schema = ds.get_field_schema()
    sub.clear_sample_fields([f for f in pf.sample_fields() if f in schema])
    sub.clear_frame_field(pf.frames)


def write_predictions(ds: fo.Dataset, pf: PredFields, items: Sequence[tuple[str, Any, list[GroundingPrediction]]]) -> None:
    """Write ``[(sample_id, metadata, predictions)]`` in one batch: frames first, ``<p>_meta`` last.

    Frame boxes go in as plain documents (:func:`labels.prediction_frame_docs`, checked there) with
    ``validate=False``; that is most of the speed-up measured in bench/bench_fiftyone.py. A crash
    between the writes leaves ``<p>_meta`` unset, so the sample is not done and is redone next run.
    """
    frames: dict[str, dict[int, dict]] = {}
    fields: dict[str, dict[str, Any]] = {k: {} for k in ("span", "spans", "confidence", "error", "meta")}
    for sid, meta, preds in items:
        w, h = float(meta.frame_width), float(meta.frame_height)
        n = int(meta.total_frame_count or 0) or None
        values, _ = prediction_labels([_no_boxes(p) for p in preds], w, h, float(meta.frame_rate or 0), n, label=pf.base)
        frame_docs = prediction_frame_docs(preds, w, h, label=pf.base)
        if frame_docs:
            frames[sid] = frame_docs
        for k in fields:
            fields[k][sid] = values[k]
    if frames:
        ds.set_values(f"frames.{pf.frames}", frames, key_field="id", validate=False)
    single = pf.span in ds.get_field_schema()  # declared only for datasets imported with single_span_fields
    for k in ("span", "spans", "confidence", "error", "meta"):
        if k != "span" or single:
            ds.set_values(getattr(pf, k), fields[k], key_field="id")


def _no_boxes(p: GroundingPrediction) -> GroundingPrediction:
    from dataclasses import replace

    return replace(p, boxes={})
