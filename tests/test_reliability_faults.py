"""Fault injection end to end: broken videos mixed into a set never crash a run, are named, and change nothing else.

``stvg predict``, ``stvg evaluate`` and ``stvg lmms-eval`` run over ``mixed.jsonl`` (4 good synthetic
videos + zero-byte, truncated, not-a-video, missing, single-frame and resolution-change inputs, see
``fault_injection.py``). Each must finish, name every unreadable video with its reason, and give the
good qids the predictions of a clean run over the good videos alone (spans, texts and keys exactly,
floats to float rounding: another run of the model, see tests/close.py).
"""

# relevance_threshold=0.0: the seeded random tiny model's relevance head then covers the whole video, so
# every good query gets a real span and boxes to compare (its untrained probabilities may all sit below 0.5).

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import fault_injection
import pytest
from close import assert_close, iou_ulps, smallest_side
from fault_injection import REASONS, UNREADABLE, FaultySet, read_jsonl

from stvg_plugin.cli import main

faulty_set = fault_injection.faulty_set

NUM_FRAMES = 4  # same budget for every run below, so their predictions are comparable
FRAME_PX = 160  # fault_injection's videos: generate_synthetic's default 160 x 120 frames, the boxes' scale
BIN = Path(sys.executable).parent


def _run(args: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(args)
    return code, out.getvalue()


@pytest.fixture(scope="module")
def runs(faulty_set: FaultySet, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("fault_runs")
    result = {}
    for name, ann in (("clean", faulty_set.clean), ("mixed", faulty_set.mixed)):
        code, printed = _run(["predict", "model=spacevllm_tiny", "model.relevance_threshold=0.0", f"num_frames={NUM_FRAMES}", f"annotations={ann}",
                              f"output_dir={root / name}"])
        assert code == 0, printed
        result[name] = {"out": root / name, "printed": printed, "preds": read_jsonl(root / name / "predictions.jsonl")}
    return result


def test_predict_finishes_and_names_every_bad_video(runs: dict, faulty_set: FaultySet) -> None:
    mixed = runs["mixed"]
    preds = {p["qid"]: p for p in mixed["preds"]}
    expected_order = [r["qid"] for r in read_jsonl(faulty_set.mixed)]
    assert [p["qid"] for p in mixed["preds"]] == expected_order  # every query answered, annotation order
    assert not (mixed["out"] / "predictions.partial.jsonl").exists()
    for kind in UNREADABLE:
        qid = faulty_set.qid_of(kind)
        path = str(faulty_set.bad[qid][1])
        error = preds[qid].get("error")
        assert error and path in error and REASONS[kind] in error, (kind, error)
        assert f"{qid}: {error}" in mixed["printed"], kind  # the printed summary names it with its reason
        assert not preds[qid].get("span_frames") and not preds[qid]["boxes"]
    assert f"{len(UNREADABLE)} queries could not be grounded" in mixed["printed"]
    single = preds[faulty_set.qid_of("single_frame")]  # readable: answered (or parse_failed), not an error
    assert "error" not in single, single


def test_good_videos_get_exactly_the_clean_runs_predictions(runs: dict, faulty_set: FaultySet) -> None:
    clean = {p["qid"]: p for p in runs["clean"]["preds"]}
    mixed = {p["qid"]: p for p in runs["mixed"]["preds"]}
    assert sorted(clean) == sorted(faulty_set.good_qids)
    for qid in faulty_set.good_qids:
        assert_close(mixed[qid], clean[qid], qid, scale=FRAME_PX)
        assert "error" not in clean[qid] and clean[qid]["span_frames"][1] > clean[qid]["span_frames"][0]


def test_evaluate_counts_and_names_bad_videos(runs: dict, faulty_set: FaultySet, tmp_path: Path) -> None:
    rows, printed = {}, {}
    for name, ann in (("clean", faulty_set.clean), ("mixed", faulty_set.mixed)):
        out = tmp_path / name
        code, printed[name] = _run(["evaluate", "benchmark=unified", f"annotations={ann}",
                                    f"predictions={runs[name]['out'] / 'predictions.jsonl'}", f"output_dir={out}"])
        assert code == 0, printed[name]
        rows[name] = {r["qid"]: r for r in read_jsonl(out / "per_query.jsonl")}
    summary = json.loads((tmp_path / "mixed" / "summary.json").read_text())
    assert summary["num_queries"] == len(faulty_set.good_qids) + len(faulty_set.bad)
    assert summary["num_errors"] == len(UNREADABLE) and summary["num_missing"] == 0
    assert f"{len(UNREADABLE)} queries have no answer because of an error" in printed["mixed"]
    for kind in UNREADABLE:
        qid = faulty_set.qid_of(kind)
        row = rows["mixed"][qid]
        assert row["tIoU"] == 0.0 and row["vIoU"] == 0.0 and str(faulty_set.bad[qid][1]) in row["error"]
        assert f"{qid}: {row['error']}" in printed["mixed"]
    boxes = [b for r in (*read_jsonl(faulty_set.clean), *runs["clean"]["preds"]) for b in r["boxes"].values()]
    for qid in faulty_set.good_qids:  # IoUs of boxes equal to rounding: that rounding amplified by small boxes
        assert_close(rows["mixed"][qid], rows["clean"][qid], qid, ulps=iou_ulps(FRAME_PX, smallest_side(boxes)))
    assert "because of an error" not in printed["clean"]


def _lmms_env(tmp: Path, synth_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STVG_")}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1",
               HF_DATASETS_CACHE=str(tmp / "hf_datasets"), TOKENIZERS_PARALLELISM="false",
               STVG_SYNTHETIC_DIR=str(synth_dir))
    return env


def test_lmms_eval_finishes_names_bad_videos_and_matches_clean_predictions(
    runs: dict, faulty_set: FaultySet, tmp_path: Path
) -> None:
    pytest.importorskip("lmms_eval")
    from lmms_tasks.results import find_samples

    synth = tmp_path / "synth"  # stvg_synthetic reads <dir>/annotations.jsonl; video paths are absolute
    synth.mkdir()
    (synth / "annotations.jsonl").write_text(faulty_set.mixed.read_text(encoding="utf-8"), encoding="utf-8")
    out = tmp_path / "lmms"
    proc = subprocess.run(
        [str(BIN / "stvg"), "lmms-eval", "--model", "spacevllm", "--model_args",
         f"pretrained=spacevllm_tiny,num_frames={NUM_FRAMES},relevance_threshold=0.0", "--tasks", "stvg_synthetic", "--batch_size", "1",
         "--output_path", str(out), "--log_samples", "--verbosity", "INFO"],
        env=_lmms_env(tmp_path, synth), capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    [samples_path] = find_samples(out, "stvg_synthetic")
    samples = {s["queries"]["qid"]: s for s in read_jsonl(samples_path)}
    assert sorted(samples) == sorted([*faulty_set.good_qids, *faulty_set.bad])
    logged = proc.stdout + proc.stderr
    for kind in UNREADABLE:
        qid = faulty_set.qid_of(kind)
        s, path = samples[qid], str(faulty_set.bad[qid][1])
        assert s["m_vIoU"] == 0.0 and path in s["error"] and REASONS[kind] in s["error"]
        assert s["queries"]["prediction"]["error"] == s["error"]
        assert s["missing_video"] == (path if kind == "missing" else None)
        assert f"{qid} ({path}): " in logged  # the run's log names it too
    single = samples[faulty_set.qid_of("single_frame")]
    assert single["error"] is None
    clean = {p["qid"]: p for p in runs["clean"]["preds"]}
    for qid in faulty_set.good_qids:
        assert_close(samples[qid]["queries"]["prediction"], clean[qid], qid, scale=FRAME_PX)
        assert samples[qid]["error"] is None
    [results_path] = sorted(out.glob("**/*_results.json"))
    results = json.loads(results_path.read_text())["results"]["stvg_synthetic"]
    assert results["error,none"] == len(UNREADABLE) and results["missing_video,none"] == 1.0
