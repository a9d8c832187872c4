"""Score a prediction run with the core metric engine and store per-sample / per-query numbers; compare runs."""

from __future__ import annotations

from collections import Counter
from typing import Any

import fiftyone as fo

from .fields import _declare_one, _gt_prefixes, _info, _mean, _save_info
from .importing import QUERY_VIEW, query_view
from .labels import FieldError, GtFields, PredFields, check_name, predictions_from_view, queries_from_view

CATEGORIES = ("correct", "temporal_miss", "spatial_miss", "both_miss", "parse_failed")
MIXED = "mixed"  # <key>_category of a sample whose queries fall in different categories (each query's is on its span)


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
