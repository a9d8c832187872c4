"""The plugin's operators: forms and progress only; every operator calls one function of ``io.py``.

Headless use (FiftyOne validates ``params`` without applying form defaults, so pass the required
ones)::

    foo.execute_operator("@stvg/grounding/ground_videos", ctx=dict(dataset=ds, params={"pred_field": "pred"}))

``ground_videos`` streams progress when run from the App in immediate mode (the form's
``stream_progress``; a generator, so that run's result is read from
``dataset.info["stvg"]["runs"][pred_field]``); a headless call without ``stream_progress`` returns
its result, and a delegated run (``fiftyone delegated launch``) stores it on the operation.
A missing required parameter fails with a message naming it (:func:`_required`).
"""

from __future__ import annotations

from typing import Any

import fiftyone.operators as foo
import fiftyone.operators.types as types

from . import io as stvg_io

PLUGIN = "@stvg/grounding"


def _p(ctx, name: str, default: Any = None) -> Any:
    value = ctx.params.get(name, default)
    return default if value in (None, "") else value


class MissingParamError(ValueError):
    """A required operator parameter is absent; the message names it and what it is for."""


def _required(ctx, name: str, what: str) -> Any:
    """``ctx.params[name]``, or an error naming the parameter.

    Required inputs are declared ``required=False`` in the forms and checked here: FiftyOne's own
    schema validation, which runs first and also headlessly, reports only "Validation error".
    """
    value = _p(ctx, name)
    if value is None:
        raise MissingParamError(f"missing required parameter {name!r} ({what})")
    return value


def _gt_input(inputs: types.Object) -> None:
    inputs.str("gt_field", default="gt", required=False, label="Ground-truth prefix",
               description="GT fields <gt>_spans, <gt>_span, frames.<gt> (never written by predictions)")  # fmt: skip


def _result_output(ctx) -> types.Property:
    outputs = types.Object()
    outputs.obj("result", label="Result", view=types.JSONView())
    return types.Property(outputs)


class ImportBenchmark(foo.Operator):
    @property
    def config(self) -> foo.OperatorConfig:
        return foo.OperatorConfig(
            name="import_benchmark",
            label="STVG: import benchmark",
            description="HC-STVG v1/v2, VidSTG, Charades-STA, V-STaR, unified JSONL or `stvg synth` output",
            dynamic=False,
            allow_immediate_execution=True,
            allow_delegated_execution=True,
        )

    def resolve_input(self, ctx) -> types.Property:
        from stvg_plugin.adapters import BENCHMARKS

        inputs = types.Object()
        choices = types.Dropdown()
        for name in (*BENCHMARKS, stvg_io.SYNTH):
            choices.add_choice(name, label=name)
        inputs.enum("benchmark", choices.values(), required=False, label="Benchmark (required)", view=choices)
        inputs.str("annotations", required=False, label="Annotations file (or `stvg synth` folder) (required)")
        inputs.str("dataset_name", required=False, label="Dataset name (required)")
        inputs.str("video_root", required=False, label="Video folder (if the annotations hold names only)")
        inputs.bool("one_sample_per_query", default=False, required=False, label="One sample per query",
                    description="Flatten: per-query tIoU/vIoU become plain sample fields")  # fmt: skip
        _gt_input(inputs)
        inputs.bool("overwrite", default=False, required=False, label="Replace an existing dataset of that name")
        return types.Property(inputs, view=types.View(label="Import an STVG benchmark"))

    def execute(self, ctx) -> dict:
        ds, result = stvg_io.import_benchmark(
            _required(ctx, "benchmark", "the benchmark format"),
            _required(ctx, "annotations", "the annotation file or `stvg synth` folder"),
            _required(ctx, "dataset_name", "the dataset to create"),
            video_root=_p(ctx, "video_root"),
            one_sample_per_query=bool(_p(ctx, "one_sample_per_query", False)),
            gt_field=_p(ctx, "gt_field", "gt"),
            overwrite=bool(_p(ctx, "overwrite", False)),
        )
        if not ctx.delegated:
            ctx.ops.open_dataset(ds.name)
        return result

    def resolve_output(self, ctx) -> types.Property:
        return _result_output(ctx)


class GroundVideos(foo.Operator):
    @property
    def config(self) -> foo.OperatorConfig:
        return foo.OperatorConfig(
            name="ground_videos",
            label="STVG: ground videos",
            description="Predict a span and a box tube per query with a grounding model",
            dynamic=False,
            execute_as_generator=True,
            allow_immediate_execution=True,
            allow_delegated_execution=True,
            default_choice_to_delegated=True,
        )

    def resolve_input(self, ctx) -> types.Property:
        inputs = types.Object()
        inputs.view_target(ctx, action_description="Ground")
        inputs.str("pred_field", required=False, label="Prediction field (required)",
                   description="writes <p>_span, <p>_spans, frames.<p>, <p>_confidence, <p>_error, <p>_meta")  # fmt: skip
        inputs.str("model", default="spacevllm_tiny", required=False, label="Model",
                   description="a model-core preset (e.g. spacevllm_tiny, spacevllm_7b) or `prompted`")  # fmt: skip
        inputs.str("checkpoint", required=False, label="Checkpoint folder (local)")
        inputs.bool("trust_remote_code", default=False, required=False, label="Trust remote code",
                    description="run Python code shipped in the checkpoint folder (only if you trust it)")  # fmt: skip
        inputs.str("device", default="cpu", required=False, label="Device")
        inputs.int("num_frames", required=False, label="Frames sampled per video (model default if empty)")
        _gt_input(inputs)
        inputs.bool("overwrite", default=False, required=False, label="Redo samples already grounded")
        inputs.int("batch_size", default=16, required=False, label="Samples per database write")
        inputs.int("max_samples", required=False, label="Stop after N new samples (rerun continues)")
        # the App fills this default in, so App runs stream progress; a headless call that leaves it out
        # gets the result back (a generator's return value never reaches execute_operator's caller)
        inputs.bool("stream_progress", default=True, required=False, label="Show progress while running")
        return types.Property(inputs, view=types.View(label="Ground videos"))

    def execute(self, ctx):
        events = stvg_io.iter_ground(
            ctx.target_view(),
            _required(ctx, "pred_field", "the prediction field to write"),
            model=_p(ctx, "model", "spacevllm_tiny"),
            checkpoint=_p(ctx, "checkpoint"),
            trust_remote_code=bool(_p(ctx, "trust_remote_code", False)),
            device=_p(ctx, "device", "cpu"),
            num_frames=_p(ctx, "num_frames"),
            gt_field=_p(ctx, "gt_field", "gt"),
            overwrite=bool(_p(ctx, "overwrite", False)),
            batch_size=int(_p(ctx, "batch_size", 16)),
            max_samples=_p(ctx, "max_samples"),
        )
        if ctx.delegated or not ctx.params.get("stream_progress"):
            # a worker (progress goes on the operation, the result is stored with it) or a headless call
            result: dict = {}
            for ev in events:
                result = ev.get("result", result)
                ctx.set_progress(progress=ev["done"] / max(ev["total"], 1), label=f"{ev['done']}/{ev['total']} videos")
            return result
        return self._stream(ctx, events)

    @staticmethod
    def _stream(ctx, events):
        for ev in events:
            label = f"{ev['done']}/{ev['total']} videos"
            if "result" in ev:
                r = ev["result"]
                label = f"done: {r['num_processed']} grounded, {r['num_errors']} failed, {r['num_skipped_done']} skipped"
            yield ctx.ops.set_progress(progress=ev["done"] / max(ev["total"], 1), label=label)
        yield ctx.ops.reload_dataset()


class EvaluateGrounding(foo.Operator):
    @property
    def config(self) -> foo.OperatorConfig:
        return foo.OperatorConfig(
            name="evaluate_grounding",
            label="STVG: evaluate grounding",
            description="Per-query tIoU / vIoU / category and the benchmark summary (same numbers as `stvg evaluate`)",
            dynamic=False,
            allow_immediate_execution=True,
            allow_delegated_execution=True,
        )

    def resolve_input(self, ctx) -> types.Property:
        from stvg_plugin.metrics import protocol_names

        inputs = types.Object()
        inputs.view_target(ctx, action_description="Evaluate")
        inputs.str("pred_field", required=False, label="Prediction field (required)")
        inputs.str("eval_key", required=False, label="Evaluation key (default: the prediction field)")
        _gt_input(inputs)
        inputs.enum("protocol", list(protocol_names()), required=False, label="Protocol (default: the benchmark's)")
        inputs.float("tiou_thresh", default=0.5, required=False, label="Temporal hit: tIoU >=")
        inputs.float("viou_thresh", default=0.3, required=False, label="Spatial hit: vIoU >")
        inputs.bool("box_eval", default=True, required=False, label="Also run FiftyOne evaluate_detections on frames")
        return types.Property(inputs, view=types.View(label="Evaluate grounding"))

    def execute(self, ctx) -> dict:
        result = stvg_io.evaluate_grounding(
            ctx.target_view(),
            _required(ctx, "pred_field", "the prediction field to evaluate"),
            _p(ctx, "eval_key"),
            gt_field=_p(ctx, "gt_field", "gt"),
            protocol=_p(ctx, "protocol"),
            tiou_thresh=float(_p(ctx, "tiou_thresh", 0.5)),
            viou_thresh=float(_p(ctx, "viou_thresh", 0.3)),
            box_eval=bool(_p(ctx, "box_eval", True)),
        )
        if not ctx.delegated:
            ctx.ops.reload_dataset()
        return result

    def resolve_output(self, ctx) -> types.Property:
        return _result_output(ctx)


class ImportLmmsEvalResults(foo.Operator):
    @property
    def config(self) -> foo.OperatorConfig:
        return foo.OperatorConfig(
            name="import_lmms_eval_results",
            label="STVG: import lmms-eval results",
            description="Attach an lmms-eval --log_samples run (joined on qid) and compare it with another run",
            dynamic=False,
            allow_immediate_execution=True,
            allow_delegated_execution=True,
        )

    def resolve_input(self, ctx) -> types.Property:
        inputs = types.Object()
        inputs.str("samples_path", required=False, label="lmms-eval samples JSONL (--log_samples) (required)")
        inputs.str("run_name", required=False, label="Run name (prediction field and eval key) (required)")
        _gt_input(inputs)
        inputs.bool("evaluate", default=True, required=False, label="Evaluate the run")
        inputs.str("compare_to", required=False, label="Evaluated run to compare with (writes delta_vIoU_<run>_<other>)")
        return types.Property(inputs, view=types.View(label="Import lmms-eval results"))

    def execute(self, ctx) -> dict:
        result = stvg_io.import_lmms_eval_results(
            ctx.dataset.view(),
            _required(ctx, "samples_path", "the lmms-eval --log_samples JSONL"),
            _required(ctx, "run_name", "the prediction field and eval key to write"),
            gt_field=_p(ctx, "gt_field", "gt"),
            evaluate=bool(_p(ctx, "evaluate", True)),
            compare_to=_p(ctx, "compare_to"),
        )
        if not ctx.delegated:
            ctx.ops.reload_dataset()
        return result

    def resolve_output(self, ctx) -> types.Property:
        return _result_output(ctx)


OPERATORS = (ImportBenchmark, GroundVideos, EvaluateGrounding, ImportLmmsEvalResults)
