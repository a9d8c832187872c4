"""The STVG evaluation as a FiftyOne evaluation run: listed, reloadable by key, deleted with its fields."""

from __future__ import annotations

import fo_fixtures
import pytest

from stvg_plugin.data import GroundingPrediction, read_queries
from stvg_plugin.metrics import evaluate

fo_env = fo_fixtures.fo_env
synth_ds = fo_fixtures.synth_ds


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
