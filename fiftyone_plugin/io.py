"""Import, ground, evaluate and compare as plain functions; the operators in ``operators.py`` only wrap these.

Every function validates its field names and refuses a write into ground truth *before* touching
the dataset. Writes are batched dict-form ``set_values`` (see docs/FIFTYONE.md for the measured
speed-up over per-sample ``save()``); stale values of the samples about to be written are cleared
first, because dict writes merge frames.
"""

from __future__ import annotations

import logging
import math
import os
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import fiftyone as fo

from stvg_plugin.data import GroundingPrediction, GroundingQuery, StvgError

from .app import apply_colors
from .labels import (
    FieldError,
    GtFields,
    PredFields,
    check_name,
    check_pred_vs_gt,
    gt_sample,
    prediction_frame_docs,
    prediction_labels,
    predictions_from_view,
    queries_from_view,
    sample_queries,
    video_metadata,
)

log = logging.getLogger(__name__)

INFO_KEY = "stvg"  # dataset.info[INFO_KEY]: benchmark, protocol, GT prefixes, evaluation summaries
CATEGORIES = ("correct", "temporal_miss", "spatial_miss", "both_miss", "parse_failed")
QUERY_VIEW = "per_query"  # saved view made by import_benchmark (per-video layout): query_view(ds)
MIXED = "mixed"  # <key>_category of a sample whose queries fall in different categories (each query's is on its span)
SYNTH = "synth"


# --------------------------------------------------------------------------- helpers


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


# --------------------------------------------------------------------------- import


def resolve_benchmark(name: str, annotations: str | os.PathLike) -> tuple[str, Path]:
    """``synth`` (the ``stvg synth`` folder or its annotations.jsonl) maps to the unified reader."""
    from stvg_plugin.adapters import BENCHMARKS

    key = str(name).strip().lower().replace("-", "_")
    path = Path(annotations).expanduser()
    if key == SYNTH:
        return "unified", path / "annotations.jsonl" if path.is_dir() else path
    if key not in BENCHMARKS:
        raise StvgError(f"unknown benchmark {name!r}; known: {', '.join((*BENCHMARKS, SYNTH))}")
    return key, path


def _video_facts(video: str, qs: Sequence[GroundingQuery]) -> tuple[float, int, int, int]:
    """fps, frames, width, height from the annotation when complete, else from the file header (PyAV)."""
    q = qs[0]
    if q.fps > 0 and q.num_frames > 0 and q.width > 0 and q.height > 0:
        return q.fps, q.num_frames, q.width, q.height
    from stvg_plugin.video import probe_video

    info = probe_video(video)
    return info.fps, info.num_frames, info.width, info.height


def import_benchmark(
    name: str,
    annotations: str | os.PathLike,
    dataset_name: str | None = None,
    *,
    video_root: str | os.PathLike | None = None,
    one_sample_per_query: bool = False,
    gt_field: str = "gt",
    overwrite: bool = False,
    persistent: bool = True,
    skip_missing_videos: bool = True,
    batch_size: int = 64,
    single_span_fields: bool = False,
    **reader_kw: Any,
) -> tuple[fo.Dataset, dict]:
    """Load a benchmark (``stvg_plugin.adapters``) into a video dataset; returns ``(dataset, result)``.

    A video that is missing on disk (or, lacking fps/size in the annotation, cannot be probed) is
    skipped and named in ``result["skipped"]``; an existing but undecodable file is imported (its
    grounding then records the decode error). No ffprobe is needed: metadata comes from the
    annotation or PyAV's header read. ``single_span_fields`` also writes ``<gt>_span`` / ``<p>_span``
    (a ``TemporalDetection``) on one-query samples, duplicating ``<gt>_spans`` / ``<p>_spans``.

    ``overwrite=True`` never loses the existing dataset: the new one is built under a temporary
    name and swapped in only when the whole import succeeded (:func:`_swap_in`); on any failure the
    temporary dataset is deleted and the old one is left as it was.
    """
    from stvg_plugin.adapters import load_benchmark

    g = GtFields(check_name(gt_field, "ground-truth field"))
    bench, path = resolve_benchmark(name, annotations)
    replacing = dataset_name is not None and fo.dataset_exists(dataset_name)
    if replacing and not overwrite:
        raise StvgError(f"dataset {dataset_name!r} exists; pass overwrite=True to replace it")
    skipped_entries: list = []
    reader_kw.setdefault("skipped", skipped_entries)
    queries = load_benchmark(bench, str(path), video_root=str(video_root) if video_root else None, **reader_kw)
    build_name = f"{dataset_name}-stvg-import-{uuid.uuid4().hex[:12]}" if replacing else dataset_name
    ds = fo.Dataset(build_name, persistent=persistent)
    try:
        result = _fill(ds, queries, skipped_entries, bench, path, g, gt_field, one_sample_per_query, batch_size,
                       skip_missing_videos, single_span_fields)
    except BaseException:
        ds.delete()
        raise
    if replacing:
        try:
            _swap_in(ds, dataset_name)
        except BaseException:
            if ds.name != dataset_name:  # not swapped in: the old dataset still has the name
                ds.delete()
            raise
    result["dataset"] = ds.name
    return ds, result


def _swap_in(new: fo.Dataset, name: str) -> None:
    """Give ``new`` the name ``name``, then delete the dataset that had it (renamed aside first)."""
    old = fo.load_dataset(name)
    aside = f"{name}-stvg-replaced-{uuid.uuid4().hex[:12]}"
    old.name = aside
    try:
        new.name = name
    except BaseException:
        old.name = name
        raise
    fo.delete_dataset(aside)


def _fill(ds, queries, skipped_entries, bench, path, g, gt_field, one_sample_per_query, batch_size,
          skip_missing_videos, single_span_fields) -> dict:
    """Add one sample per video (or per query) to ``ds``; returns the import result."""
    from stvg_plugin.adapters import default_protocol
    from stvg_plugin.video import VideoReadError

    by_video: dict[str, list[GroundingQuery]] = {}
    for q in queries:
        by_video.setdefault(q.video, []).append(q)
    skipped: list[dict] = [{"video": None, "reason": f"{e.entry}: {e.reason}"} for e in skipped_entries]
    batch: list[fo.Sample] = []
    num_samples = num_queries = 0
    for video, qs in by_video.items():
        if not os.path.isfile(video):
            if skip_missing_videos:
                skipped.append({"video": video, "reason": "file not found", "qids": [q.qid for q in qs]})
                continue
        try:
            fps, n, w, h = _video_facts(video, qs)
        except VideoReadError as exc:
            skipped.append({"video": video, "reason": exc.reason, "qids": [q.qid for q in qs]})
            continue
        meta = video_metadata(video, fps, n, w, h)
        groups = [[q] for q in qs] if one_sample_per_query else [qs]
        for group in groups:
            batch.append(gt_sample(video, group, meta, g, flat=one_sample_per_query, single_span=single_span_fields))
            num_samples += 1
            num_queries += len(group)
        if len(batch) >= batch_size:
            ds.add_samples(batch, progress=False)
            batch = []
    if batch:
        ds.add_samples(batch, progress=False)
    if one_sample_per_query:
        ds.create_index("qid")
    _save_info(
        ds,
        {
            "benchmark": bench,
            "annotations": str(path),
            "protocol": default_protocol(bench),
            "layout": "query" if one_sample_per_query else "video",
            "gt_fields": sorted({gt_field, *(_info(ds).get("gt_fields") or [])}),
            "single_span_fields": bool(single_span_fields),
        },
    )
    apply_colors(ds, [gt_field])
    if not one_sample_per_query and num_samples:  # per-query fields in the sidebar: one clip per query
        ds.save_view(QUERY_VIEW, query_view(ds, gt_field), overwrite=True)
    result = {
        "dataset": ds.name,
        "benchmark": bench,
        "num_samples": num_samples,
        "num_queries": num_queries,
        "num_skipped": len(skipped),
        "skipped": skipped[:50],
    }
    return result


# --------------------------------------------------------------------------- grounding

_MODEL_CACHE: dict[tuple, Any] = {}


def load_model(model: str = "spacevllm_tiny", checkpoint: str | None = None, device: str = "cpu",
               num_frames: int | None = None, cache: bool = True, trust_remote_code: bool = False) -> Any:
    """A ``Grounder`` (model core preset) or, with ``model="prompted"``, a ``PromptedGrounder`` checkpoint.

    Kept per process (the App server, a delegated worker) so repeated runs do not reload weights.
    ``trust_remote_code`` is the operator's parameter only; a checkpoint asking for it is refused without it.
    """
    key = (model, checkpoint, device, num_frames, bool(trust_remote_code))
    if cache and key in _MODEL_CACHE:
        return _MODEL_CACHE[key]
    if model == "prompted":
        if not checkpoint:
            raise StvgError("model='prompted' needs checkpoint=<local folder of a Qwen2.5-VL, Qwen3-VL, "
                            "InternVL or LLaVA-OneVision checkpoint>")
        from stvg_plugin.models.prompted import PromptedGrounder

        kw = {"num_frames": int(num_frames)} if num_frames else {}
        grounder = PromptedGrounder.from_pretrained(checkpoint, device=device, **kw)
    else:
        from stvg_plugin.models import load_grounder, resolve_spec

        cfg: Any = model
        if num_frames:
            cfg = dict(resolve_spec(model), num_frames=int(num_frames))
        if trust_remote_code:  # a key of its own: the preset's runtime keys must not override the checkpoint's
            cfg = {**({"preset": cfg} if isinstance(cfg, str) else cfg), "trust_remote_code": bool(trust_remote_code)}
        grounder = load_grounder(cfg, checkpoint=checkpoint, device=device)
    if cache:
        _MODEL_CACHE[key] = grounder
    return grounder


def _done_ids(view, pf: PredFields) -> set[str]:
    schema = view.get_field_schema()
    if pf.meta not in schema:
        return set()
    ids, metas = view.values(["id", pf.meta])
    errors = view.values(pf.error) if pf.error in schema else [None] * len(ids)
    return {sid for sid, m, e in zip(ids, metas, errors) if m is not None and e is None}


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


def iter_ground(
    view,
    pred_field: str,
    *,
    model: str = "spacevllm_tiny",
    checkpoint: str | None = None,
    device: str = "cpu",
    num_frames: int | None = None,
    gt_field: str = "gt",
    query_field: str = "query",
    overwrite: bool = False,
    batch_size: int = 16,
    max_samples: int | None = None,
    grounder: Any = None,
    trust_remote_code: bool = False,
) -> Iterator[dict]:
    """Ground the samples of ``view``; yields progress dicts, the last one with ``"result"``.

    Resumable: samples whose ``<p>_meta`` is set without ``<p>_error`` are skipped unless
    ``overwrite``; ``max_samples`` stops after that many new samples (rerun to continue). A sample
    whose video cannot be decoded gets ``<p>_error`` and is counted in ``result["num_errors"]``.
    """
    pf, g = _check_writable(view, pred_field, gt_field)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    ds = view._dataset
    work = sample_queries(view, g.base, query_field)
    metas = dict(zip(*view.values(["id", "metadata"])))
    missing_meta = [sid for sid, _ in work if metas.get(sid) is None or not metas[sid].frame_width]
    if missing_meta:
        raise StvgError(f"{len(missing_meta)} samples have no video metadata (e.g. {missing_meta[0]}); "
                        "import with import_benchmark or fill fo.VideoMetadata first")  # fmt: skip
    done = set() if overwrite else _done_ids(view, pf)
    todo = [(sid, qs) for sid, qs in work if sid not in done and qs]
    if max_samples is not None:
        todo = todo[: max(0, int(max_samples))]
    _declare(ds, pf)  # nothing is written before all checks above passed
    _clear(ds, [sid for sid, _ in todo], pf)
    total = len(todo)
    yield {"done": 0, "total": total}

    result = {
        "pred_field": pred_field,
        "num_samples": len(work),
        "num_skipped_done": sum(1 for sid, _ in work if sid in done),
        "num_processed": 0,
        "num_queries": 0,
        "num_errors": 0,
        "errors": [],
    }
    if todo:
        grounder = grounder or load_model(model, checkpoint, device, num_frames, trust_remote_code=trust_remote_code)
        owner = {q.qid: sid for sid, qs in todo for q in qs}
        expected = {sid: len(qs) for sid, qs in todo}
        got: dict[str, list[GroundingPrediction]] = {sid: [] for sid, _ in todo}
        pending: list[str] = []
        finished = 0

        def flush() -> None:
            nonlocal pending
            items = [(sid, metas[sid], got.pop(sid)) for sid in pending]
            write_predictions(ds, pf, items)
            for sid, _, preds in items:
                errs = sorted({p.error for p in preds if p.error})
                if errs:
                    result["num_errors"] += 1
                    if len(result["errors"]) < 50:
                        result["errors"].append({"id": sid, "error": "; ".join(errs)})
                result["num_queries"] += len(preds)
            pending = []

        all_queries = [q for _, qs in todo for q in qs]
        for pred in grounder.predict(all_queries, progress=False):
            sid = owner.get(pred.qid)
            if sid is None or sid not in got:
                continue
            got[sid].append(pred)
            if len(got[sid]) == expected[sid]:
                pending.append(sid)
                finished += 1
                if len(pending) >= batch_size:
                    flush()
                yield {"done": finished, "total": total}
        for sid in [s for s in got if s not in pending]:  # the model skipped some queries: record that
            have = {p.qid for p in got[sid]}
            got[sid] += [GroundingPrediction(qid=q.qid, error="model returned no prediction")
                         for q in dict(todo)[sid] if q.qid not in have]  # fmt: skip
            pending.append(sid)
        if pending:
            flush()
        result["num_processed"] = total
    _record_run(ds, pred_field, model, checkpoint, result)
    yield {"done": total, "total": total, "result": result}


def _record_run(ds: fo.Dataset, pred_field: str, model: str, checkpoint: str | None, result: dict) -> None:
    info = _info(ds)
    runs = dict(info.get("runs") or {})
    runs[pred_field] = {"model": model, "checkpoint": checkpoint, **result, "errors": result["errors"][:20]}
    info["runs"] = runs
    _save_info(ds, info)


def ground_videos(view, pred_field: str, **kw: Any) -> dict:
    """Run :func:`iter_ground` to the end; returns its result."""
    last: dict = {}
    for event in iter_ground(view, pred_field, **kw):
        last = event
    return last["result"]


# --------------------------------------------------------------------------- evaluation


def categorize(row: dict, tiou_thresh: float = 0.5, viou_thresh: float = 0.3) -> str:
    """``correct`` (tIoU >= t and vIoU > v), ``spatial_miss`` (span ok, boxes not), ``temporal_miss``
    (boxes ok, span not), ``both_miss``; ``parse_failed`` when there was no usable answer (missing,
    unparsable or a decode error)."""
    if row.get("missing") or row.get("parse_failed") or row.get("error"):
        return "parse_failed"
    tiou, viou = row.get("tIoU"), row.get("vIoU")
    t_ok = tiou is not None and tiou >= tiou_thresh
    v_ok = viou is not None and viou > viou_thresh
    if t_ok and v_ok:
        return "correct"
    if t_ok:
        return "spatial_miss"
    if v_ok:
        return "temporal_miss"
    return "both_miss"


def evaluate_grounding(
    view,
    pred_field: str,
    eval_key: str | None = None,
    *,
    gt_field: str = "gt",
    protocol: str | None = None,
    tiou_thresh: float = 0.5,
    viou_thresh: float = 0.3,
    box_eval: bool = True,
    box_iou: float = 0.5,
) -> dict:
    """Score run ``pred_field`` with :func:`stvg_plugin.metrics.evaluate` and store the per-query numbers.

    Writes, for eval key ``k`` (default: the prediction field's name): sample floats ``k_tIoU``,
    ``k_vIoU`` (mean over the sample's queries; exactly the query's values in the one-query layout),
    ``k_category`` (the queries' common category, ``mixed`` when they differ); per query, the attributes ``k_tIoU``, ``k_vIoU``,
    ``k_category`` on the ``<gt>_spans`` labels (sort ``ds.to_clips("<gt>_spans")`` by them) and
    on ``<p>_spans``. With ``box_eval``, frame boxes also go through FiftyOne's
    ``evaluate_detections`` (key ``k_box``, classwise=False). The summary is ``evaluate``'s own.

    The run is a FiftyOne evaluation run with key ``k`` (:mod:`fiftyone_plugin.evaluation`):
    ``list_evaluations()`` shows it, ``load_evaluation_results(k)`` returns the summary and the
    per-query rows, ``delete_evaluation(k)`` removes every field above. Re-running a key replaces it.
    """
    from fiftyone_plugin.evaluation import StvgEvaluationConfig, StvgEvaluationResults
    from stvg_plugin.metrics import default_protocol, evaluate

    check_name(pred_field, "prediction field")
    g = GtFields(check_name(gt_field, "ground-truth field"))
    key = check_name(eval_key or pred_field, "eval key")
    pf = PredFields(pred_field)
    if pred_field in _gt_prefixes(view._dataset, gt_field):
        raise FieldError(f"prediction field {pred_field!r} is a ground-truth field")
    ds = view._dataset
    schema = view.get_field_schema()
    if pf.meta not in schema:
        raise FieldError(f"no predictions '{pred_field}' on this dataset (expected field {pf.meta!r})")
    if g.queries not in schema:
        raise FieldError(f"no ground truth '{gt_field}' on this dataset (expected field {g.queries!r})")
    protocol = protocol or _info(ds).get("protocol") or default_protocol()

    queries = queries_from_view(view, g.base)
    result = evaluate(queries, predictions_from_view(view, pred_field), protocol=protocol)
    rows = {r["qid"]: dict(r, category=categorize(r, tiou_thresh, viou_thresh)) for r in result.per_query}

    config = StvgEvaluationConfig(pred_field=pred_field, gt_field=gt_field, protocol=protocol, tiou_thresh=tiou_thresh,
                                  viou_thresh=viou_thresh, box_eval=box_eval, box_iou=box_iou)
    method = config.build()
    method.register_run(view, key, overwrite=True, cleanup=True)  # a previous run of this key: its fields go first

    names = {m: f"{key}_{m}" for m in ("tIoU", "vIoU", "category")}
    ids, qids = view.values(["id", "qids"])
    sample_vals: dict[str, dict[str, Any]] = {n: {} for n in names.values()}
    for sid, qs in zip(ids, qids):
        sub = [rows[q] for q in qs or [] if q in rows]
        sample_vals[names["tIoU"]][sid] = _mean(r.get("tIoU") for r in sub)
        sample_vals[names["vIoU"]][sid] = _mean(r.get("vIoU") for r in sub)
        cats = {r["category"] for r in sub}
        sample_vals[names["category"]][sid] = cats.pop() if len(cats) == 1 else (MIXED if cats else None)
    for field, ftype in ((names["tIoU"], fo.FloatField), (names["vIoU"], fo.FloatField),
                         (names["category"], fo.StringField)):  # fmt: skip
        _declare_one(ds.add_sample_field, ds.get_field_schema(), field, dict(ftype=ftype))
        ds.set_values(field, sample_vals[field], key_field="id")
    for spans_field in (g.spans, pf.spans):
        _set_span_attrs(view, spans_field, rows, names)
    if QUERY_VIEW in ds.list_saved_views() and gt_field == (_info(ds).get("gt_fields") or ["gt"])[0]:
        ds.save_view(QUERY_VIEW, query_view(ds, gt_field), overwrite=True)  # its clips now carry the new attributes

    box: dict[str, Any] = {}
    if box_eval and pf.frames in (ds.get_frame_field_schema() or {}):
        box_key = f"{key}_box"
        if ds.has_evaluation(box_key):
            ds.delete_evaluation(box_key)
        view.evaluate_detections(
            f"frames.{pf.frames}", gt_field=f"frames.{g.frames}", eval_key=box_key, classwise=False, iou=box_iou,
            progress=False,
        )  # fmt: skip
        box = {n: int(view.sum(f"{box_key}_{n}") or 0) for n in ("tp", "fp", "fn")}
        box["eval_key"] = box_key

    categories = Counter(r["category"] for r in rows.values())
    out = {
        "eval_key": key,
        "pred_field": pred_field,
        "protocol": protocol,
        "thresholds": {"tIoU": tiou_thresh, "vIoU": viou_thresh},
        "summary": result.summary,
        "categories": {c: int(categories.get(c, 0)) for c in CATEGORIES},
        "box": box,
    }
    info = _info(ds)
    evals = dict(info.get("evaluations") or {})
    evals[key] = out
    info["evaluations"] = evals
    _save_info(ds, info)
    results = StvgEvaluationResults(view, config, key, summary=result.summary, per_query=list(rows.values()),
                                    categories=out["categories"], box=box, backend=method)
    method.save_run_results(view, key, results)
    return out


def _set_span_attrs(view, spans_field: str, rows: dict[str, dict], names: dict[str, str]) -> None:
    if spans_field not in view.get_field_schema():
        return
    sids, lids, qids = view.values(["id", f"{spans_field}.detections.id", f"{spans_field}.detections.qid"])
    for metric, attr in names.items():
        values = []
        for sid, ls, qs in zip(sids, lids, qids):
            for lid, q in zip(ls or [], qs or []):
                if q in rows:
                    values.append({"sample_id": sid, "label_id": lid, "value": rows[q].get(metric)})
        if values:
            view.set_label_values(f"{spans_field}.detections.{attr}", values, dynamic=True)


def compare_runs(view, key_a: str, key_b: str) -> dict:
    """``delta_vIoU_<a>_<b>`` / ``delta_tIoU_<a>_<b>`` = run a minus run b, per sample (and per query on GT spans)."""
    check_name(key_a, "eval key")
    check_name(key_b, "eval key")
    ds = view._dataset
    out = {}
    for m in ("vIoU", "tIoU"):
        fa, fb = f"{key_a}_{m}", f"{key_b}_{m}"
        schema = ds.get_field_schema()
        for f in (fa, fb):
            if f not in schema:
                raise FieldError(f"no field {f!r}: evaluate run {f.rsplit('_', 1)[0]!r} first")
        ids, va, vb = view.values(["id", fa, fb])
        delta = {sid: (a - b if a is not None and b is not None else None) for sid, a, b in zip(ids, va, vb)}
        name = f"delta_{m}_{key_a}_{key_b}"
        _declare_one(ds.add_sample_field, schema, name, dict(ftype=fo.FloatField))
        ds.set_values(name, delta, key_field="id")
        out[name] = _mean(delta.values())
    return out


# --------------------------------------------------------------------------- lmms-eval


def read_lmms_samples(path: str | os.PathLike) -> list[GroundingPrediction]:
    """Predictions of an lmms-eval ``--log_samples`` file of an ``stvg_*`` task (``lmms_tasks.results``)."""
    from lmms_tasks.results import read_samples

    return list(read_samples(path))


def import_lmms_eval_results(view, samples_path: str | os.PathLike, run_name: str, **kw: Any) -> dict:
    """Attach an lmms-eval run's predictions (joined on ``qid``) as run ``run_name``; optionally evaluate
    it (eval key = ``run_name``) and write ``delta_vIoU_<run_name>_<compare_to>`` (see :func:`attach_predictions`)."""
    return attach_predictions(view, read_lmms_samples(samples_path), run_name, **kw)


def attach_predictions(
    view,
    predictions: Iterable[GroundingPrediction],
    run_name: str,
    *,
    gt_field: str = "gt",
    evaluate: bool = True,
    compare_to: str | None = None,
    protocol: str | None = None,
    tiou_thresh: float = 0.5,
    viou_thresh: float = 0.3,
) -> dict:
    """Attach predictions made elsewhere (``stvg predict``, lmms-eval, another tool) as run ``run_name``,
    joined on ``qid``; unknown and duplicate qids are counted, never written. Optionally evaluate the run
    (eval key = ``run_name``) and write ``delta_vIoU_<run_name>_<compare_to>``."""
    pf, g = _check_writable(view, run_name, gt_field)
    if compare_to is not None:
        check_name(compare_to, "run to compare to")
    preds = list(predictions)
    ds = view._dataset
    ids, qids, metas = view.values(["id", "qids", "metadata"])
    owner = {q: sid for sid, qs in zip(ids, qids) for q in qs or []}
    by_sample: dict[str, list[GroundingPrediction]] = {}
    unknown, seen = [], set()
    num_dup = 0
    for p in preds:
        sid = owner.get(p.qid)
        if sid is None:
            unknown.append(p.qid)
            continue
        if p.qid in seen:
            num_dup += 1
            continue
        seen.add(p.qid)
        by_sample.setdefault(sid, []).append(p)
    _declare(ds, pf)
    _clear(ds, ids, pf)
    meta_by_id = dict(zip(ids, metas))
    items = [(sid, meta_by_id[sid], ps) for sid, ps in by_sample.items()]
    for i in range(0, len(items), 64):
        write_predictions(ds, pf, items[i : i + 64])
    out: dict[str, Any] = {
        "run_name": run_name,
        "num_lines": len(preds),
        "num_matched": len(seen),
        "num_unknown_qids": len(unknown),
        "unknown_qids": unknown[:20],
        "num_duplicates": num_dup,
        "num_queries_without_prediction": sum(len(qs or []) for qs in qids) - len(seen),
    }
    if evaluate:
        out["evaluation"] = evaluate_grounding(
            view, run_name, run_name, gt_field=gt_field, protocol=protocol, tiou_thresh=tiou_thresh,
            viou_thresh=viou_thresh,
        )  # fmt: skip
    if compare_to:
        out["deltas"] = compare_runs(view, run_name, compare_to)
    return out


def query_view(dataset, gt_field: str = "gt"):
    """One clip per query (``to_clips("<gt>_spans")``): sort/filter by ``<gt>_spans.<key>_vIoU``."""
    return dataset.to_clips(GtFields(check_name(gt_field, "ground-truth field")).spans)
