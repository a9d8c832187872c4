"""The STVG evaluation as a FiftyOne evaluation run: listed, reloadable by key, deleted with its fields."""

from __future__ import annotations

import pytest

from stvg_plugin.data import GroundingPrediction, read_queries
from stvg_plugin.metrics import evaluate


def _predictions(synth_dir) -> list[GroundingPrediction]:
    """Perfect answers for half the queries, a shifted span (same boxes) for the rest: distinct per-query numbers."""
    out = []
    for i, q in enumerate(read_queries(synth_dir / "annotations.jsonl")):
        s, e = q.span_frames
        span = (s, e) if i % 2 == 0 else (s + (e - s) // 2, e + (e - s) // 2)
        out.append(GroundingPrediction(qid=q.qid, span_frames=span, boxes=dict(q.boxes)))
    return out


def test_evaluation_run_lifecycle(synth_ds, synth_dir) -> None:
    from fiftyone_plugin.evaluation import StvgEvaluationResults
    from fiftyone_plugin.io import attach_predictions

    ds = synth_ds
    preds = _predictions(synth_dir)
    attach_predictions(ds, preds, "pred", evaluate=True)
    assert "pred" in ds.list_evaluations()
    assert "pred_box" in ds.list_evaluations()  # FiftyOne's own frame-box evaluation, alongside
    info = ds.get_evaluation_info("pred")
    assert info.config.method == "stvg" and info.config.pred_field == "pred" and info.config.gt_field == "gt"

    results = ds.load_evaluation_results("pred")
    assert isinstance(results, StvgEvaluationResults)
    reference = evaluate(read_queries(synth_dir / "annotations.jsonl"), preds, protocol="tubedetr")
    assert results.summary["m_vIoU"] == pytest.approx(reference.summary["m_vIoU"], rel=1e-12)
    ref_rows = {r["qid"]: r for r in reference.per_query}
    rows = results.by_qid()
    assert set(rows) == set(ref_rows)
    for qid, row in rows.items():
        assert row["tIoU"] == pytest.approx(ref_rows[qid]["tIoU"], rel=1e-12)
        assert row["vIoU"] == pytest.approx(ref_rows[qid]["vIoU"], rel=1e-12)
        assert row["category"] in ("correct", "temporal_miss", "spatial_miss", "both_miss", "parse_failed")
    assert sum(results.categories.values()) == len(rows)
    assert {r["category"] for r in rows.values()} >= {"correct"}

    fields = ds.get_evaluation_info("pred").config.build().get_fields(ds, "pred")
    assert {"pred_tIoU", "pred_vIoU", "pred_category"} <= set(fields)
    assert "gt_spans.detections.pred_vIoU" in fields

    ds.delete_evaluation("pred")
    assert "pred" not in ds.list_evaluations() and "pred_box" not in ds.list_evaluations()
    schema = ds.get_field_schema(flat=True)
    leftovers = [f for f in schema if "pred_tIoU" in f or "pred_vIoU" in f or "pred_category" in f]
    assert leftovers == []
    assert "pred" not in (ds.info.get("stvg") or {}).get("evaluations", {})
    assert "pred_spans" in schema  # the predictions themselves stay: only the evaluation is deleted


def test_re_evaluating_a_key_replaces_the_run(synth_ds, synth_dir) -> None:
    from fiftyone_plugin.io import attach_predictions, evaluate_grounding

    ds = synth_ds
    attach_predictions(ds, _predictions(synth_dir), "pred", evaluate=False)
    first = evaluate_grounding(ds, "pred", "ev", tiou_thresh=0.5)
    second = evaluate_grounding(ds, "pred", "ev", tiou_thresh=0.2)
    assert ds.list_evaluations().count("ev") == 1
    results = ds.load_evaluation_results("ev")
    assert results.config.tiou_thresh == 0.2
    assert results.categories == second["categories"] != first["categories"]


def _run_op(name: str, ds=None, **params):
    import fiftyone.operators as foo
    from fo_fixtures import PLUGIN_URI

    ctx = {"params": params}
    if ds is not None:
        ctx["dataset"] = ds
    return foo.execute_operator(f"{PLUGIN_URI}/{name}", ctx=ctx)


def test_labels_name_their_run_and_colours_differ(synth_ds, synth_dir) -> None:
    from fiftyone_plugin.app import GT_COLOR
    from fiftyone_plugin.io import attach_predictions

    ds = synth_ds
    attach_predictions(ds, _predictions(synth_dir), "pred", evaluate=True)
    sample = ds.first()
    assert {d.label for d in sample["gt_spans"].detections} == {"gt"}
    assert all(d["query"] in sample["queries"] for d in sample["gt_spans"].detections)
    assert {d.label for d in sample["pred_spans"].detections} == {"pred"}
    frame = next(f for f in sample.frames.values() if f["gt"] and f["pred"])
    assert {d.label for d in frame["gt"].detections} == {"gt"} and {d.label for d in frame["pred"].detections} == {"pred"}
    assert all(d["query"] for d in frame["gt"].detections)
    # no single-span duplicates unless asked at import
    schema = ds.get_field_schema()
    assert "gt_span" not in schema and "pred_span" not in schema
    colors = {f["path"]: f["fieldColor"] for f in ds.app_config.color_scheme.fields}
    assert ds.app_config.color_scheme.color_by == "field"
    assert colors["frames.gt"] == colors["gt_spans"] == GT_COLOR
    assert colors["frames.pred"] == colors["pred_spans"] != GT_COLOR
    attach_predictions(ds, _predictions(synth_dir), "other", evaluate=False)
    colors = {f["path"]: f["fieldColor"] for f in ds.app_config.color_scheme.fields}
    assert len({colors["frames.gt"], colors["frames.pred"], colors["frames.other"]}) == 3


def test_single_span_fields_when_asked(fo_env, synth_dir) -> None:
    from fo_fixtures import unique_name

    from fiftyone_plugin.io import attach_predictions, import_benchmark

    ds, _ = import_benchmark("synth", synth_dir, unique_name("single"), one_sample_per_query=True,
                             single_span_fields=True)
    try:
        attach_predictions(ds, _predictions(synth_dir), "pred", evaluate=False)
        sample = ds.first()
        assert sample["gt_span"].support == sample["gt_spans"].detections[0].support
        assert sample["pred_span"].label == "pred"
    finally:
        ds.delete()


def test_multi_query_samples_get_a_category(synth_ds, synth_dir) -> None:
    from fiftyone_plugin.io import MIXED, attach_predictions

    ds = synth_ds
    attach_predictions(ds, _predictions(synth_dir), "pred", evaluate=True)
    rows = ds.load_evaluation_results("pred").by_qid()
    multi = [(qs, cat) for qs, cat in zip(ds.values("qids"), ds.values("pred_category")) if len(qs) > 1]
    assert multi, "the synthetic set should have a video with several queries"
    for qids, category in multi:
        cats = {rows[q]["category"] for q in qids}
        assert category == (cats.pop() if len(cats) == 1 else MIXED)


def test_headless_ground_returns_result_and_missing_params_are_named(synth_ds) -> None:
    res = _run_op("ground_videos", synth_ds, pred_field="pred", max_samples=1)
    assert res.error is None, res.error
    assert res.result["num_processed"] == 1
    for name, params, missing in (
        ("ground_videos", {}, "pred_field"),
        ("evaluate_grounding", {}, "pred_field"),
        ("import_benchmark", {"benchmark": "synth", "annotations": "x"}, "dataset_name"),
        ("import_lmms_eval_results", {"samples_path": "x"}, "run_name"),
    ):
        with pytest.raises(Exception, match=f"missing required parameter '{missing}'"):
            _run_op(name, synth_ds, **params)


def test_import_saves_a_per_query_view_with_the_metrics(synth_ds, synth_dir) -> None:
    from fiftyone_plugin.io import QUERY_VIEW, attach_predictions

    ds = synth_ds
    assert QUERY_VIEW in ds.list_saved_views()
    attach_predictions(ds, _predictions(synth_dir), "pred", evaluate=True)
    clips = ds.load_saved_view(QUERY_VIEW)
    assert clips.count() == sum(len(q) for q in ds.values("qids"))
    rows = ds.load_evaluation_results("pred").by_qid()
    for qid, viou, category in zip(*clips.values(["gt_spans.qid", "gt_spans.pred_vIoU", "gt_spans.pred_category"])):
        assert viou == pytest.approx(rows[qid]["vIoU"], rel=1e-12) and category == rows[qid]["category"]
