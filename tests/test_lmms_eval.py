"""lmms-eval integration, end to end: the real lmms-eval CLI, real MP4s, real models, real scorer.

One ``stvg lmms-eval`` run of the tiny SpaceVLLM over ``stvg_synthetic`` + ``stvg_hcstvg_v1`` (the
synth's native HC-STVG file) on a small synthetic set where one video is corrupt and one is
missing; its logged predictions are re-scored with ``stvg_plugin.metrics.evaluate`` and must give
the same numbers. Further runs: the prompted backend (tiny random Qwen2.5-VL), the exit statuses
of the wrapper, and a 2-process data-parallel run of the stock CLI.
"""

# relevance_threshold=0.0: the seeded random tiny model's relevance head then covers the whole video, so
# every good query gets a real span and boxes to compare (its untrained probabilities may all sit below 0.5).

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from close import iou_ulps, isclose, smallest_side

from lmms_tasks import TASKS_DIR
from lmms_tasks.common import metric_names, process_results, query_to_doc
from lmms_tasks.results import find_samples, read_samples
from stvg_plugin.adapters import default_protocol, load_benchmark
from stvg_plugin.data import GroundingPrediction
from stvg_plugin.metrics import evaluate
from stvg_plugin.synth import generate_synthetic

BIN = Path(sys.executable).parent
TIMEOUT = 300


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STVG_")}
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_DATASETS_CACHE=str(tmp / "hf_datasets"),
        OMP_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
    )
    env.update(extra)
    return env


def _stvg_lmms(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "stvg"), "lmms-eval", *args], env=env, capture_output=True, text=True, timeout=TIMEOUT
    )


def _results(output_path: Path) -> dict:
    files = sorted(output_path.glob("**/*_results.json"))
    assert len(files) == 1, files
    return json.loads(files[0].read_text())


def _samples(output_path: Path, task: str) -> list[dict]:
    files = find_samples(output_path, task)
    assert len(files) == 1, files
    return [json.loads(line) for line in files[0].read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """4 synthetic videos: video_0001 replaced by a text file, video_0002 deleted."""
    root = tmp_path_factory.mktemp("lmms_data")
    synth = root / "synth"
    generate_synthetic(synth, num_videos=4, seed=3)
    corrupt, missing = synth / "video_0001.mp4", synth / "video_0002.mp4"
    corrupt.write_text("this is not a video\n", encoding="utf-8")
    missing.unlink()
    env = _env(root, STVG_SYNTHETIC_DIR=str(synth), STVG_HCSTVG_V1_ANNOTATIONS=str(synth / "hcstvg.json"),
               STVG_HCSTVG_V1_VIDEOS=str(synth))
    return {"root": root, "synth": synth, "env": env, "corrupt": str(corrupt), "missing": str(missing)}


@pytest.fixture(scope="module")
def spacevllm_run(data: dict) -> dict:
    out = data["root"] / "out_spacevllm"
    proc = _stvg_lmms(
        ["--model", "spacevllm", "--model_args", "pretrained=spacevllm_tiny,num_frames=4,relevance_threshold=0.0",
         "--tasks", "stvg_synthetic,stvg_hcstvg_v1", "--batch_size", "1",
         "--output_path", str(out), "--log_samples", "--verbosity", "INFO"],
        data["env"],
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {"out": out, "proc": proc}


TASK_FILES = {"stvg_synthetic": ("unified", "annotations.jsonl"), "stvg_hcstvg_v1": ("hcstvg_v1", "hcstvg.json")}


def _same_mean(logged: float, evaluated: float, n: int) -> bool:
    """lmms-eval's mean of the per-query values (a plain float64 sum) against ``evaluate()``'s
    (``math.fsum``) over the same n values in [0, 1]: at most one float64 rounding step apart per term."""
    return isclose(logged, evaluated, dtype=np.float64, ulps=max(n, 1))


@pytest.mark.parametrize("task", sorted(TASK_FILES))
def test_lmms_numbers_equal_stvg_evaluate(spacevllm_run: dict, data: dict, task: str) -> None:
    results = _results(spacevllm_run["out"])["results"][task]
    benchmark, name = TASK_FILES[task]
    queries = load_benchmark(benchmark, str(data["synth"] / name), str(data["synth"]) if benchmark != "unified" else None)
    preds = list(read_samples(find_samples(spacevllm_run["out"], task)[0]))
    assert sorted(p.qid for p in preds) == sorted(q.qid for q in queries)
    summary = evaluate(queries, preds, protocol=default_protocol(benchmark)).summary
    names = metric_names(default_protocol(benchmark))
    assert set(names) >= {"m_tIoU", "m_vIoU", "vIoU@0.3", "vIoU@0.5"}
    for name in names:
        assert _same_mean(results[f"{name},none"], summary[name], len(queries)), name
    assert summary["m_tIoU"] > 0  # the good videos got real (random-model) spans, not all zeros
    assert results["error,none"] == summary["num_errors"] > 0
    assert _same_mean(results["parse_failed,none"], summary["num_parse_failed"] / summary["num_queries"], len(queries))


def test_lmms_samples_carry_prediction_details(spacevllm_run: dict, data: dict) -> None:
    for task in TASK_FILES:
        lines = _samples(spacevllm_run["out"], task)
        good = [s for s in lines if s["queries"]["video"] not in (data["corrupt"], data["missing"])]
        assert good, task
        for s in good:
            detail = s["queries"]
            pred = detail["prediction"]
            assert detail["qid"] == pred["qid"] and os.path.isfile(detail["video"])
            assert pred["span_frames"][1] > pred["span_frames"][0] and pred["boxes"] and "raw_text" in pred
            assert s["error"] is None and s["missing_video"] is None
            assert json.loads(s["filtered_resps"] if isinstance(s["filtered_resps"], str) else s["filtered_resps"][0])


def test_lmms_bad_and_missing_videos_score_zero_and_are_named(spacevllm_run: dict, data: dict) -> None:
    lines = _samples(spacevllm_run["out"], "stvg_synthetic")
    corrupt = [s for s in lines if s["queries"]["video"] == data["corrupt"]]
    missing = [s for s in lines if s["queries"]["video"] == data["missing"]]
    assert corrupt and missing
    for s in corrupt + missing:
        assert s["m_vIoU"] == 0.0 and s["m_tIoU"] == 0.0
        assert s["queries"]["video"] in s["error"]  # the failure names the file
    assert all(s["missing_video"] == data["missing"] for s in missing)
    assert all(s["missing_video"] is None for s in corrupt)
    results = _results(spacevllm_run["out"])["results"]["stvg_synthetic"]
    assert results["missing_video,none"] == len(missing)
    assert results["error,none"] == len(corrupt) + len(missing)


def test_lmms_results_hold_only_metrics_and_no_count_stderr(spacevllm_run: dict) -> None:
    """No ``"qid,none": []`` junk; counts without a standard error; lmms-eval's version, not our commit."""
    from importlib.metadata import version

    from lmms_tasks.common import COUNT_METRICS, DETAIL_METRIC

    run = _results(spacevllm_run["out"])
    for task in TASK_FILES:
        results = run["results"][task]
        listed = set(run["higher_is_better"][task])
        assert DETAIL_METRIC in listed
        for key, value in results.items():
            if key in ("alias", "samples"):
                continue
            metric = key.split(",")[0]
            base = metric.split("_stderr")[0]
            assert base in listed, f"{task}: {key} is not a metric"
            assert not isinstance(value, list), f"{task}: {key} = {value!r}"
        for name in ("error", "missing_video", DETAIL_METRIC):
            assert isinstance(results[f"{name},none"], float)
            stderr_keys = [k for k in results if k.startswith(f"{name}_stderr")]
            assert stderr_keys and all(results[k] == "N/A" for k in stderr_keys), {k: results[k] for k in stderr_keys}
        assert results[f"{DETAIL_METRIC},none"] == run["n-samples"][task]["effective"]
        assert isinstance(results["m_vIoU_stderr,none"], float)  # the means keep theirs
        assert set(COUNT_METRICS) <= listed
    assert run["lmms_eval_version"] == version("lmms-eval")
    head = subprocess.run(["git", "-C", str(Path(__file__).resolve().parent), "rev-parse", "--short=8", "HEAD"],
                          capture_output=True, text=True)
    if head.returncode == 0:
        assert head.stdout.strip() not in run["lmms_eval_version"]
        assert not str(run.get("git_hash") or "").startswith(head.stdout.strip()[:7])


def test_stvg_evaluate_cli_reads_logged_predictions(spacevllm_run: dict, data: dict, tmp_path: Path) -> None:
    from lmms_tasks.results import samples_to_predictions

    preds = tmp_path / "predictions.jsonl"
    samples_to_predictions(find_samples(spacevllm_run["out"], "stvg_hcstvg_v1")[0], preds)
    proc = subprocess.run(
        [str(BIN / "stvg"), "evaluate", "benchmark=hcstvg_v1", f"annotations={data['synth'] / 'hcstvg.json'}",
         f"video_root={data['synth']}", f"predictions={preds}", f"output_dir={tmp_path / 'eval'}"],
        env=data["env"], capture_output=True, text=True, timeout=TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    results = _results(spacevllm_run["out"])["results"]["stvg_hcstvg_v1"]
    for name in ("m_tIoU", "m_vIoU", "vIoU@0.3", "vIoU@0.5"):
        assert _same_mean(results[f"{name},none"], summary[name], summary["num_queries"]), name


def _run_stvg_prompted(data: dict, ckpt, out_name: str, model_args: str) -> tuple[Path, list]:
    """``stvg_prompted`` on the synthetic task through the real CLI; returns (output dir, logged predictions)."""
    out = data["root"] / out_name
    proc = _stvg_lmms(
        ["--model", "stvg_prompted", "--model_args", f"pretrained={ckpt},num_frames=2,{model_args}",
         "--tasks", "stvg_synthetic", "--output_path", str(out), "--log_samples"],
        data["env"],
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, list(read_samples(find_samples(out, "stvg_synthetic")[0]))


def test_stvg_prompted_tiny_qwen(data: dict) -> None:
    from stvg_plugin.models.prompted import build_tiny_prompted

    ckpt = build_tiny_prompted(data["root"] / "tiny_qwen", seed=0)
    out, preds = _run_stvg_prompted(data, ckpt, "out_prompted", "max_new_tokens=24")
    results = _results(out)["results"]["stvg_synthetic"]
    queries = load_benchmark("unified", str(data["synth"] / "annotations.jsonl"))
    summary = evaluate(queries, preds).summary
    for name in ("m_tIoU", "m_vIoU", "vIoU@0.3", "vIoU@0.5"):
        assert _same_mean(results[f"{name},none"], summary[name], len(queries)), name
    good = [p for p in preds if p.error is None]
    assert good and all(p.raw_text is not None for p in good)  # random text: parsed or flagged, never lost
    assert _same_mean(results["parse_failed,none"], sum(p.parse_failed for p in preds) / len(preds), len(preds))


def test_stvg_prompted_other_families_with_a_recipe(data: dict) -> None:
    """The lmms-eval model runs any family (read from the checkpoint) and takes recipe=."""
    from stvg_plugin.models.prompted import build_tiny_prompted

    ckpt = build_tiny_prompted(data["root"] / "tiny_llava_ov", seed=0, family="llava_onevision")
    _, preds = _run_stvg_prompted(data, ckpt, "out_prompted_llava_ov", "max_new_tokens=16,recipe=stvg_o1")
    good = [p for p in preds if p.error is None]
    assert good and all(p.extra["backend"] == "prompted:llava_onevision" for p in good)


def test_missing_annotation_env_var_is_named_with_exit_2(tmp_path: Path) -> None:
    proc = _stvg_lmms(["--model", "spacevllm", "--model_args", "pretrained=spacevllm_tiny", "--tasks", "stvg_hcstvg_v2"],
                      _env(tmp_path))
    assert proc.returncode == 2
    assert "STVG_HCSTVG_V2_ANNOTATIONS is not set" in proc.stderr
    proc = _stvg_lmms(["--model", "spacevllm", "--tasks", "stvg_vidstg"],
                      _env(tmp_path, STVG_VIDSTG_ANNOTATIONS=str(tmp_path / "nope.json")))
    assert proc.returncode == 2 and f"STVG_VIDSTG_ANNOTATIONS={tmp_path / 'nope.json'} is not an existing file" in proc.stderr


def test_task_typo_exits_2_with_the_closest_names_before_importing_lmms_eval(tmp_path: Path) -> None:
    probe = ("import sys, json; from lmms_tasks.cli import main; code = main(sys.argv[1:]); "
             "print(json.dumps({'code': code, 'heavy': sorted(m for m in ('lmms_eval', 'torch') if m in sys.modules)}))")
    for argv, needle in ((["--model", "spacevllm", "--tasks", "stvg_synthtic"], "did you mean stvg_synthetic"),
                         (["--model", "spacevllm", "--tasks=stvg_hcstvg_v3"], "stvg_hcstvg_v1"),
                         (["--model", "spacevllm", "--tasks", "stvg_hcstvg_v2"], "STVG_HCSTVG_V2_ANNOTATIONS is not set")):
        proc = subprocess.run([sys.executable, "-c", probe, *argv], env=_env(tmp_path), capture_output=True, text=True,
                              timeout=TIMEOUT)
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        assert out == {"code": 2, "heavy": []}, (argv, out, proc.stderr)
        assert needle in proc.stderr, proc.stderr


def test_tasks_list_exits_0(tmp_path: Path) -> None:
    proc = _stvg_lmms(["--tasks", "list"], _env(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "stvg_synthetic" in proc.stdout + proc.stderr


def test_failed_evaluation_exits_non_zero(data: dict) -> None:
    proc = _stvg_lmms(["--model", "spacevllm", "--model_args", "pretrained=/no/such/model", "--tasks", "stvg_synthetic"],
                      data["env"])
    assert proc.returncode == 1
    assert "evaluation failed" in proc.stderr and "/no/such/model" in proc.stderr


@pytest.mark.slow
def test_data_parallel_two_processes_give_same_numbers(spacevllm_run: dict, data: dict) -> None:
    # `accelerate launch` itself imports timm -> torchvision (not installed here): call its module.
    # --multi_gpu without GPUs = torchrun-style CPU processes over gloo; --cpu would run one process.
    out = data["root"] / "out_dp"
    proc = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
         "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "lmms_eval", "--model", "spacevllm",
         "--model_args", "pretrained=spacevllm_tiny,num_frames=4,relevance_threshold=0.0", "--tasks", "stvg_synthetic,stvg_hcstvg_v1",
         "--include_path", TASKS_DIR, "--output_path", str(out), "--log_samples", "--verbosity", "DEBUG"],
        env=data["env"], capture_output=True, text=True, timeout=TIMEOUT,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Running on rank 1" in proc.stdout + proc.stderr
    dp, single = _results(out)["results"], _results(spacevllm_run["out"])["results"]
    # two runs of the model: boxes equal to float32 rounding, IoU metrics to that rounding amplified by the
    # smallest box (tests/close.py)
    queries = load_benchmark("unified", str(data["synth"] / "annotations.jsonl"))
    logged = [b for s in _samples(spacevllm_run["out"], "stvg_synthetic") for b in (s["queries"]["prediction"] or {}).get("boxes", {}).values()]
    boxes = [*logged, *(b for q in queries for b in q.boxes.values())]
    ulps = iou_ulps(max(max(q.width, q.height) for q in queries), smallest_side(boxes))
    for task in TASK_FILES:
        for name in metric_names(default_protocol(TASK_FILES[task][0])):
            assert isclose(dp[task][f"{name},none"], single[task][f"{name},none"], ulps=ulps), (task, name)
        assert len(_samples(out, task)) == len(_samples(spacevllm_run["out"], task))


# ------------------------------------------------------------------ process_results on its own


def _doc(data: dict) -> dict:
    query = load_benchmark("unified", str(data["synth"] / "annotations.jsonl"))[0]
    return query_to_doc(query, "unified", "tubedetr")


def test_process_results_reads_stock_model_free_text(data: dict) -> None:
    doc = _doc(data)
    record = json.loads(doc["record"])
    t0, t1 = record["span_s"]
    frame = record["span_frames"][0]
    x1, y1, x2, y2 = record["boxes"][str(frame)]
    answer = f"from {t0} s to {t1} s\n{t0} s: [{x1}, {y1}, {x2}, {y2}]"
    out = process_results(doc, [answer])
    assert out["parse_failed"] == 0.0 and out["error"] == 0.0
    assert out["m_tIoU"] > 0.9 and out["m_vIoU"] > 0.0
    assert out["prediction"]["raw_text"] == answer


def test_process_results_unreadable_answer_scores_zero(data: dict) -> None:
    out = process_results(_doc(data), ["I cannot tell."])
    assert out["parse_failed"] == 1.0
    assert out["m_tIoU"] == out["m_vIoU"] == out["vIoU@0.3"] == 0.0


def test_process_results_wrong_qid_is_an_error_not_a_crash(data: dict) -> None:
    answer = json.dumps(GroundingPrediction(qid="someone_else", span_frames=(0, 5)).to_json())
    out = process_results(_doc(data), [answer])
    assert out["error"] == 1.0 and "someone_else" in out["failure"] and out["m_tIoU"] == 0.0


def test_task_yaml_metrics_match_process_results() -> None:
    import yaml

    from lmms_tasks.common import TASK_SOURCES

    class _Loader(yaml.SafeLoader):
        pass

    _Loader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))
    for task, src in TASK_SOURCES.items():
        path = next(Path(TASKS_DIR).glob(f"*/{task}.yaml"))
        cfg = yaml.load(path.read_text(), Loader=_Loader)
        listed = [m["metric"] for m in cfg["metric_list"]]
        expected = [*metric_names(default_protocol(src.benchmark)), "parse_failed", "missing_video", "error", "queries"]
        assert listed == expected, task
        assert cfg["task"] == task and cfg["include"] == "../_default_template_stvg_yaml"


def test_placeholder_and_template_are_package_data() -> None:
    assert (Path(TASKS_DIR) / "_placeholder.jsonl").is_file()
    template = (Path(TASKS_DIR) / "_default_template_stvg_yaml").read_text()
    assert "until:" in template and "video: true" not in template
    assert shutil.which("stvg", path=str(BIN))


# ------------------------------------------------------------------ the prompt's own format scores what it says


def _answer_as_prompted(record: dict, fps: float, to_scale) -> str:
    """A perfect answer in exactly the format the task prompt asks: span, then one box per second of it."""
    import math

    t0, t1 = record["span_s"]
    lines = [f"from {t0} s to {t1} s"]
    for t in range(math.ceil(t0), math.floor(t1) + 1):
        frame = min(max(round(t * fps), record["span_frames"][0]), record["span_frames"][1] - 1)
        box = to_scale(record["boxes"][str(frame)])
        lines.append(f"{t} s: [{', '.join(f'{v:.3f}' for v in box)}]")
    return "\n".join(lines)


@pytest.mark.parametrize(
    ("model_kwargs", "scale"),
    [({}, "pixels"), ({"box_scale": "permille"}, "permille"), ({"box_scale": "relative"}, "relative")],
)
def test_perfect_answer_in_the_prompts_format_scores_high(data: dict, model_kwargs: dict, scale: str) -> None:
    from lmms_tasks.common import doc_to_text

    doc = _doc(data)
    prompt = doc_to_text(doc, model_kwargs)
    assert "one bounding box per second" in prompt
    assert {"pixels": "pixels of the", "permille": "0 to 1000", "relative": "from 0 to 1"}[scale] in prompt
    record = json.loads(doc["record"])
    w, h = doc["width"], doc["height"]
    div = {"pixels": (1.0, 1.0), "permille": (w / 1000, h / 1000), "relative": (w, h)}[scale]
    answer = _answer_as_prompted(record, doc["fps"], lambda b: [b[0] / div[0], b[1] / div[1], b[2] / div[0], b[3] / div[1]])
    out = process_results(doc, [answer])
    assert out["parse_failed"] == 0.0 and out["error"] == 0.0, out["failure"]
    # boxes at whole seconds only (~1 in 10 frames): the filled frames between them make it near-perfect
    assert out["m_vIoU"] >= 0.9 and out["vIoU@0.5"] == 1.0
    assert out["prediction"]["extra"]["boxes_filled"] == "linear"


def test_qwen2_5_vl_answer_in_its_resized_pixels_is_rescaled(data: dict) -> None:
    from lmms_tasks.common import doc_to_text
    from stvg_plugin.models.families import get_family

    doc = _doc(data)
    kwargs = {"box_scale": "pixels", "answer_frame": "qwen2_5_vl", "max_pixels": 112 * 56}
    prompt = doc_to_text(doc, kwargs)
    ph, pw = get_family("qwen2_5_vl").answer_frame_size(doc["height"], doc["width"], max_pixels=112 * 56)
    assert (ph, pw) != (doc["height"], doc["width"])  # the resize is real, so a wrong scale would score low
    # the prompt names the frame the answer is scored in (Qwen2.5-VL's resized input), not the video's size
    assert f"in pixels of the {pw}x{ph} frame" in prompt and f"{doc['width']}x{doc['height']}" not in prompt
    sx, sy = pw / doc["width"], ph / doc["height"]
    answer = _answer_as_prompted(json.loads(doc["record"]), doc["fps"], lambda b: [b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy])
    out = process_results(doc, [answer])
    assert out["m_vIoU"] >= 0.9, out


def test_unknown_box_scale_is_a_clear_error(data: dict) -> None:
    from lmms_tasks.common import TaskDataError, doc_to_text

    with pytest.raises(TaskDataError, match="box_scale must be one of"):
        doc_to_text(_doc(data), {"box_scale": "inches"})


def test_per_model_prompt_variants_are_lmms_evals_own_kwargs(data: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through lmms-eval's TaskManager: the model name picks its variant, which names its coordinate system."""
    from lmms_eval.tasks import TaskManager

    monkeypatch.setenv("STVG_SYNTHETIC_DIR", str(data["synth"]))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(data["root"] / "hf_datasets"))
    expected = {"qwen2_5_vl": "pixels", "qwen3_vl": "permille", "internvl3_5": "permille",
                "llava_onevision": "relative", "vllm": "pixels", "openai": "relative", "some_other_model": "pixels"}
    for model, scale in expected.items():
        tm = TaskManager("ERROR", include_path=TASKS_DIR, include_defaults=False, model_name=model)
        task = tm.load_task_or_group(["stvg_synthetic"])["stvg_synthetic"]
        assert task.lmms_eval_specific_kwargs["box_scale"] == scale, model


def test_lmms_process_results_returns_exactly_the_listed_metrics(data: dict) -> None:
    """Every key returned is a metric of the task YAML, so lmms-eval writes no ``"key,none": []`` entries."""
    import yaml

    from lmms_tasks.common import lmms_process_results

    class _Loader(yaml.SafeLoader):
        pass

    _Loader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))
    cfg = yaml.load((Path(TASKS_DIR) / "synthetic" / "stvg_synthetic.yaml").read_text(), Loader=_Loader)
    listed = {m["metric"] for m in cfg["metric_list"]}
    doc = _doc(data)
    out = lmms_process_results(doc, ["I cannot tell."])
    assert set(out) == listed
    assert out["error"] is None and out["queries"]["qid"] == doc["qid"] and out["queries"]["prediction"]["parse_failed"]
    wrong = json.dumps(GroundingPrediction(qid="someone_else", span_frames=(0, 5)).to_json())
    out = lmms_process_results(doc, [wrong])
    assert set(out) == listed and "someone_else" in out["error"] and out["m_tIoU"] == 0.0


def test_unreadable_video_gives_stock_models_no_visual_and_scores_zero_with_the_reason(data: dict) -> None:
    """A corrupt or missing file never reaches a stock model (which would abort the run): no visual, error named."""
    from lmms_tasks.common import doc_to_visual

    docs = [query_to_doc(q, "unified", "tubedetr") for q in load_benchmark("unified", str(data["synth"] / "annotations.jsonl"))]
    by_video = {Path(d["video"]).name: d for d in docs}
    good = by_video["video_0000.mp4"]
    assert doc_to_visual(good) == [good["video"]]
    for name in ("video_0001.mp4", "video_0002.mp4"):  # a text file named .mp4; a deleted file
        doc = by_video[name]
        assert doc_to_visual(doc) == []
        record = json.loads(doc["record"])
        t0, t1 = record["span_s"]
        x1, y1, x2, y2 = record["boxes"][str(record["span_frames"][0])]
        out = process_results(doc, [f"from {t0} s to {t1} s\n{t0} s: [{x1}, {y1}, {x2}, {y2}]"])
        assert out["error"] == 1.0 and doc["video"] in out["failure"] and out["m_vIoU"] == 0.0, out
