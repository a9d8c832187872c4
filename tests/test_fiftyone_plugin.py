"""The ``@stvg/grounding`` operators against a real mongod, real MP4s and the real tiny model.

What an operator wrote comes from its own run of the model (other batches than the direct run): its
floats equal the direct predictions to float32 rounding (tests/close.py: pixel boxes at the frame's
size, normalised boxes, confidences at 1, IoU metrics with the boxes' rounding amplified by
``iou_ulps``), its spans, frames, texts and keys exactly.
"""

from __future__ import annotations

import json
import math

import pytest
from close import assert_close, iou_ulps, isclose, smallest_side
from fo_fixtures import PLUGIN_URI, gt_digest, unique_name

from stvg_plugin.data import GroundingPrediction, GroundingQuery, read_queries

pytestmark = pytest.mark.slow


def run_op(name: str, ds=None, view=None, **params):
    import fiftyone.operators as foo

    ctx = {"params": params}
    if view is not None:
        ctx["view"] = view
    elif ds is not None:
        ctx["dataset"] = ds
    return foo.execute_operator(f"{PLUGIN_URI}/{name}", ctx=ctx)


def pred_labels(view, pred: str = "pred") -> dict:
    """Everything a run wrote, keyed by (filepath, qid), without ids: comparable across datasets."""
    out: dict = {}
    for s in view.iter_samples():
        for d in s[f"{pred}_spans"].detections if s[f"{pred}_spans"] else []:
            out[(s.filepath, d["qid"], "span")] = (list(d.support), d.confidence)
        for fn, frame in s.frames.items():
            for d in frame[pred].detections if frame[pred] else []:
                out[(s.filepath, d["qid"] if d.has_field("qid") else d.label, fn)] = list(d.bounding_box)
        out[(s.filepath, "meta")] = json.loads(json.dumps(s[f"{pred}_meta"]))
        out[(s.filepath, "error")] = s[f"{pred}_error"]
    return out


@pytest.fixture(scope="module")
def queries(synth_dir) -> list[GroundingQuery]:
    return read_queries(synth_dir / "annotations.jsonl")


@pytest.fixture(scope="module")
def frame_px(queries) -> int:
    """The pixel boxes' scale: the synthetic frames' larger side."""
    return max(max(q.width, q.height) for q in queries)


@pytest.fixture(scope="module")
def direct_preds(queries) -> dict[str, GroundingPrediction]:
    """The model core's own predictions for every synthetic query (no FiftyOne involved)."""
    from fiftyone_plugin.io import load_model

    return {p.qid: p for p in load_model("spacevllm_tiny").predict(queries, progress=False)}


@pytest.fixture(scope="module")
def grounded(fo_env, synth_dir):
    """Imported and grounded through the operators (immediate mode); yields (dataset, GT digest before grounding)."""
    name = unique_name("grounded")
    res = run_op("import_benchmark", benchmark="synth", annotations=str(synth_dir), dataset_name=name)
    assert res.error is None, res.error
    ds = fo_env.load_dataset(name)
    before = gt_digest(ds)
    res = run_op("ground_videos", ds, pred_field="pred", batch_size=4)
    assert res.error is None, res.error
    yield ds, before
    ds.delete()


def test_plugin_registers_every_operator(fo_env):
    import fiftyone.operators as foo
    from fiftyone.plugins.context import build_plugin_contexts

    uris = {op.uri for op in foo.list_operators()}
    for name in ("import_benchmark", "ground_videos", "evaluate_grounding", "import_lmms_eval_results"):
        assert f"{PLUGIN_URI}/{name}" in uris
    ctx = [c for c in build_plugin_contexts() if c.name == PLUGIN_URI]
    assert ctx and not ctx[0].errors, ctx[0].errors if ctx else "plugin not found"


def test_import_operator_layout_and_metadata(grounded, queries):
    from fiftyone_plugin.labels import queries_from_view
    from stvg_plugin.video import probe_video

    ds, _ = grounded
    assert ds.count() == len({q.video for q in queries})
    assert sorted(q for qs in ds.values("qids") for q in qs) == sorted(q.qid for q in queries)
    # labels -> queries round trip is exact (boxes bit for bit), so metrics can run on the dataset
    back = {q.qid: q.to_json() for q in queries_from_view(ds)}
    for q in queries:
        assert back[q.qid] == q.to_json()
    s = ds.first()
    info = probe_video(s.filepath)
    assert (s.metadata.frame_rate, s.metadata.total_frame_count) == (info.fps, info.num_frames)
    assert (s.metadata.frame_width, s.metadata.frame_height) == (info.width, info.height)
    # one Instance per tube: every GT box of a query shares it
    inst = {}
    for frame in s.frames.values():
        for d in frame["gt"].detections if frame["gt"] else []:
            inst.setdefault(d["qid"], set()).add(d.instance.id)
    assert inst and all(len(v) == 1 for v in inst.values())


def test_ground_writes_the_models_predictions_and_leaves_gt(grounded, direct_preds, frame_px):
    from fiftyone_plugin.labels import predictions_from_view

    ds, before = grounded
    assert gt_digest(ds) == before
    written = {p.qid: p for p in predictions_from_view(ds, "pred")}
    assert written.keys() == direct_preds.keys()
    for qid, p in direct_preds.items():
        assert_close(written[qid].to_json(), p.to_json(), qid, scale=frame_px)
    # the labels show exactly those spans and boxes (1-based frames, inclusive support)
    n_boxes = 0
    for s in ds.iter_samples():
        w, h = s.metadata.frame_width, s.metadata.frame_height
        for d in s["pred_spans"].detections:
            p = direct_preds[d["qid"]]
            assert list(d.support) == [p.span_frames[0] + 1, p.span_frames[1]]
        for fn, frame in s.frames.items():
            for d in frame["pred"].detections if frame["pred"] else []:
                x1, y1, x2, y2 = direct_preds[d["qid"]].boxes[fn - 1]
                assert_close(list(d.bounding_box), [x1 / w, y1 / h, (x2 - x1) / w, (y2 - y1) / h], d["qid"])
                n_boxes += 1
    assert n_boxes == sum(len(p.boxes) for p in direct_preds.values())
    run = ds.info["stvg"]["runs"]["pred"]
    assert run["num_processed"] == ds.count() and run["num_errors"] == 0


def test_evaluate_operator_matches_core_metrics(grounded, queries, direct_preds, frame_px):
    from stvg_plugin.metrics import evaluate

    ds, before = grounded
    res = run_op("evaluate_grounding", ds, pred_field="pred", eval_key="ev")
    assert res.error is None, res.error
    ref = evaluate(queries, list(direct_preds.values()), protocol="tubedetr")
    # the operator scored its own run's boxes: IoUs agree to the boxes' rounding, amplified by small boxes
    boxes = [b for x in (*queries, *direct_preds.values()) for b in x.boxes.values()]
    ulps = iou_ulps(frame_px, smallest_side(boxes))
    assert_close(res.result["summary"], ref.summary, ulps=ulps)
    rows = {r["qid"]: r for r in ref.per_query}
    assert sum(res.result["categories"].values()) == len(queries)
    # per query: attributes on the GT span labels, sortable in the one-clip-per-query view
    from fiftyone_plugin.io import query_view

    clips = query_view(ds).sort_by("gt_spans.ev_vIoU")
    qids, vious = clips.values("gt_spans.qid"), clips.values("gt_spans.ev_vIoU")
    assert sorted(qids) == sorted(rows)
    assert vious == sorted(vious)
    assert_close(vious, [rows[q]["vIoU"] for q in qids], ulps=ulps)
    # per sample: mean over the sample's queries
    for qs, v in zip(ds.values("qids"), ds.values("ev_vIoU")):
        assert isclose(v, math.fsum(rows[q]["vIoU"] for q in qs) / len(qs), ulps=ulps)
    assert ds.has_evaluation("ev_box") and res.result["box"]["tp"] + res.result["box"]["fn"] > 0


def test_refused_before_anything_is_written(synth_ds):
    before_schema = sorted(synth_ds.get_field_schema()), sorted(synth_ds.get_frame_field_schema())
    before = gt_digest(synth_ds)
    for params, match in (
        ({"pred_field": "gt"}, "equals the ground-truth"),
        ({"pred_field": "bad-name"}, "not a valid name"),
        ({"pred_field": "x; drop"}, "not a valid name"),
        ({"pred_field": "queries"}, "reserved"),
        ({"pred_field": "pred", "gt_field": "9gt"}, "not a valid name"),
    ):
        with pytest.raises(Exception, match=match):
            run_op("ground_videos", synth_ds, **params)
    with pytest.raises(Exception, match="not a valid name"):
        run_op("evaluate_grounding", synth_ds, pred_field="pred", eval_key="a.b")
    with pytest.raises(Exception, match="missing required parameter .pred_field."):
        run_op("ground_videos", synth_ds, model="spacevllm_tiny")
    assert (sorted(synth_ds.get_field_schema()), sorted(synth_ds.get_frame_field_schema())) == before_schema
    assert gt_digest(synth_ds) == before


def test_interrupted_run_resumes_to_the_uninterrupted_result(grounded, synth_ds):
    import fiftyone as fo

    ds, _ = grounded
    first = run_op("ground_videos", synth_ds, pred_field="pred", max_samples=2, batch_size=1)
    assert first.error is None
    assert synth_ds.info["stvg"]["runs"]["pred"]["num_processed"] == 2
    assert synth_ds.exists("pred_meta").count() == 2
    # a stale frame label left by a crash must not survive: plant one on a not-yet-done sample
    todo = synth_ds.exists("pred_meta", False).first()
    todo.frames[1]["pred"] = fo.Detections(detections=[fo.Detection(label="x", bounding_box=[0, 0, 0.1, 0.1])])
    todo.save()
    second = run_op("ground_videos", synth_ds, pred_field="pred", batch_size=2)
    assert second.error is None
    run = synth_ds.info["stvg"]["runs"]["pred"]
    assert run["num_skipped_done"] == 2 and run["num_processed"] == synth_ds.count() - 2
    assert_close(pred_labels(synth_ds), pred_labels(ds))


def test_overwrite_clears_stale_values(synth_ds):
    import fiftyone as fo

    view = synth_ds.limit(1)
    assert run_op("ground_videos", view=view, pred_field="pred").error is None
    s = view.first()
    ref = pred_labels(view)
    last = max(s.frames.keys()) if s.frames else 1
    s.frames[last]["pred"] = fo.Detections(detections=[fo.Detection(label="stale", bounding_box=[0, 0, 0.1, 0.1])])
    s.save()
    assert pred_labels(view) != ref
    assert run_op("ground_videos", view=view, pred_field="pred", overwrite=True).error is None
    assert_close(pred_labels(view), ref)
    assert synth_ds.info["stvg"]["runs"]["pred"]["num_processed"] == 1


def test_undecodable_video_is_skipped_with_its_error(fo_env, synth_dir, bad_videos, tmp_path, queries):
    from fiftyone_plugin.io import import_benchmark

    good = queries[0]
    bad = GroundingQuery.from_json({**good.to_json(), "qid": "bad0", "video": str(bad_videos["not_a_video"])})
    gone = GroundingQuery.from_json({**good.to_json(), "qid": "gone0", "video": str(bad_videos["missing"])})
    ann = tmp_path / "ann.jsonl"
    ann.write_text("".join(json.dumps(q.to_json()) + "\n" for q in (good, bad, gone)))
    ds, res = import_benchmark("unified", ann, unique_name("bad"))
    try:
        assert res["num_samples"] == 2  # the missing file is a counted, named skip
        assert res["num_skipped"] == 1 and res["skipped"][0]["qids"] == ["gone0"]
        assert res["skipped"][0]["reason"] == "file not found"
        assert run_op("ground_videos", ds, pred_field="pred").error is None
        run = ds.info["stvg"]["runs"]["pred"]
        assert run["num_errors"] == 1 and run["num_processed"] == 2
        errors = dict(zip(ds.values("filepath"), ds.values("pred_error")))
        assert errors[good.video] is None
        assert bad.video in errors[bad.video] and run["errors"][0]["error"] == errors[bad.video]
        assert ds.match({"filepath": bad.video}).first()["pred_spans"].detections == []
    finally:
        ds.delete()


def test_delegated_run(fo_env, synth_ds, direct_preds, frame_px):
    import fiftyone.operators as foo
    from fiftyone.operators.delegated import DelegatedOperationService
    from fiftyone.operators.executor import ExecutionRunState

    from fiftyone_plugin.labels import predictions_from_view

    view = synth_ds.limit(2)
    res = foo.execute_operator(
        f"{PLUGIN_URI}/ground_videos", ctx={"view": view, "params": {"pred_field": "dpred"}}, request_delegation=True
    )
    assert res.delegated and synth_ds.exists("dpred_meta").count() == 0  # queued, nothing written yet
    svc = DelegatedOperationService()
    svc.execute_queued_operations(dataset_name=synth_ds.name)
    doc = svc.get(res.result["id"])
    assert doc.run_state == ExecutionRunState.COMPLETED, getattr(doc.result, "error", None)
    assert doc.result.result["num_processed"] == 2 and doc.result.result["num_errors"] == 0
    written = predictions_from_view(synth_ds, "dpred")
    assert len(written) == sum(len(q) for q in view.values("qids"))
    for p in written:
        assert_close(p.to_json(), direct_preds[p.qid].to_json(), p.qid, scale=frame_px)


def test_lmms_eval_runs_side_by_side(fo_env, synth_dir, queries, direct_preds, tmp_path):
    """Two lmms-eval runs (the model's, and a perfect one) attached by qid and compared per query."""
    from fiftyone_plugin.io import import_benchmark
    from stvg_plugin.metrics import evaluate

    def samples_file(name, preds, extra_lines=()):
        path = tmp_path / f"{name}.jsonl"
        lines = [{"doc_id": i, "qid": p.qid, "video": "v.mp4", "prediction": p.to_json()} for i, p in enumerate(preds)]
        path.write_text("".join(json.dumps(x) + "\n" for x in [*lines, *extra_lines]))
        return path

    perfect = [GroundingPrediction(qid=q.qid, span_frames=q.span_frames, boxes=dict(q.boxes)) for q in queries]
    stray = {"doc_id": 99, "qid": "nope", "prediction": {"qid": "nope"}}
    a = samples_file("a", direct_preds.values(), [stray])
    b = samples_file("b", perfect)
    # flattened layout: per-query numbers are plain sample fields
    ds, _ = import_benchmark("synth", synth_dir, unique_name("flat"), one_sample_per_query=True)
    try:
        assert ds.count() == len(queries)
        assert run_op("import_lmms_eval_results", ds, samples_path=str(b), run_name="runB").error is None
        res = run_op("import_lmms_eval_results", ds, samples_path=str(a), run_name="runA", compare_to="runB")
        assert res.error is None, res.error
        assert res.result["num_unknown_qids"] == 1 and res.result["num_matched"] == len(queries)
        ref_a = evaluate(queries, list(direct_preds.values()), protocol="tubedetr")
        assert res.result["evaluation"]["summary"] == ref_a.summary
        rows_a = {r["qid"]: r for r in ref_a.per_query}
        rows_b = {r["qid"]: r for r in evaluate(queries, perfect, protocol="tubedetr").per_query}
        for qid, va, vb, d in zip(*ds.values(["qid", "runA_vIoU", "runB_vIoU", "delta_vIoU_runA_runB"])):
            assert (va, vb) == (rows_a[qid]["vIoU"], rows_b[qid]["vIoU"])
            assert d == va - vb
        worst = ds.sort_by("delta_vIoU_runA_runB").first()
        assert worst["delta_vIoU_runA_runB"] == min(ds.values("delta_vIoU_runA_runB"))
        assert set(ds.values("runB_category")) == {"correct"}
    finally:
        ds.delete()
