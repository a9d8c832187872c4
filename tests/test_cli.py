"""The ``stvg`` command end to end: synth -> evaluate, the output contract, and clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from stvg_plugin.cli import main
from stvg_plugin.data import GroundingPrediction, read_queries, write_jsonl


def _perfect_predictions(annotations: Path) -> list[GroundingPrediction]:
    return [
        GroundingPrediction(qid=q.qid, span_frames=q.span_frames, boxes=dict(q.boxes))
        for q in read_queries(annotations)
    ]


def test_evaluate_perfect_predictions_score_one(synth_dir: Path, tmp_path: Path) -> None:
    ann = synth_dir / "annotations.jsonl"
    preds = tmp_path / "preds.jsonl"
    write_jsonl(preds, _perfect_predictions(ann))
    out = tmp_path / "eval"
    code = main(["evaluate", "benchmark=unified", f"annotations={ann}", f"predictions={preds}", f"output_dir={out}"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["m_tIoU"] == pytest.approx(1.0)
    assert summary["m_vIoU"] == pytest.approx(1.0)
    assert summary["vIoU@0.5"] == pytest.approx(1.0)
    assert summary["num_missing"] == 0
    assert summary["num_queries"] == len(read_queries(ann))
    rows = [json.loads(line) for line in (out / "per_query.jsonl").read_text().splitlines()]
    assert {r["qid"] for r in rows} == {q.qid for q in read_queries(ann)}
    assert all(r["tIoU"] == pytest.approx(1.0) and r["vIoU"] == pytest.approx(1.0) for r in rows)
    assert (out / ".hydra" / "config.yaml").is_file(), "the run's composed config is saved beside its outputs"


def test_evaluate_missing_prediction_counts_zero(synth_dir: Path, tmp_path: Path) -> None:
    ann = synth_dir / "annotations.jsonl"
    preds = _perfect_predictions(ann)
    dropped = preds.pop(0)
    preds.append(GroundingPrediction(qid="not-a-query", span_frames=(0, 5)))
    pred_path = tmp_path / "preds.jsonl"
    write_jsonl(pred_path, preds)
    out = tmp_path / "eval"
    assert main(["evaluate", f"annotations={ann}", f"predictions={pred_path}", f"output_dir={out}"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    n = summary["num_queries"]
    assert summary["num_missing"] == 1
    assert summary["num_unknown_qids"] == 1
    assert summary["m_tIoU"] == pytest.approx((n - 1) / n)
    rows = {r["qid"]: r for r in map(json.loads, (out / "per_query.jsonl").read_text().splitlines())}
    assert rows[dropped.qid]["tIoU"] == 0 and rows[dropped.qid]["vIoU"] == 0


def test_evaluate_hcstvg_native_matches_unified(synth_dir: Path, tmp_path: Path) -> None:
    """The synth's HC-STVG-native export scores a perfect unified prediction as perfect too."""
    ann = synth_dir / "annotations.jsonl"
    preds = tmp_path / "preds.jsonl"
    write_jsonl(preds, _perfect_predictions(ann))
    out = tmp_path / "eval_hc"
    code = main(["evaluate", "benchmark=hcstvg_v1", f"annotations={synth_dir / 'hcstvg.json'}",
                 f"predictions={preds}", f"output_dir={out}", f"video_root={synth_dir}"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_missing"] == 0
    assert summary["m_tIoU"] > 0.9


def test_missing_annotations_fail_before_work_naming_the_setting(tmp_path: Path, capsys) -> None:
    out = tmp_path / "eval"
    (tmp_path / "p.jsonl").write_text("")
    code = main(["evaluate", f"annotations={tmp_path / 'nope.jsonl'}", f"predictions={tmp_path / 'p.jsonl'}",
                 f"output_dir={out}"])
    assert code == 2
    err = capsys.readouterr().err
    assert "annotations=" in err and "nope.jsonl" in err
    assert not (out / "summary.json").exists()


def test_malformed_predictions_name_the_line(synth_dir: Path, tmp_path: Path, capsys) -> None:
    ann = synth_dir / "annotations.jsonl"
    preds = tmp_path / "preds.jsonl"
    preds.write_text('{"qid": "a", "span_frames": [0, 3]}\n{not json\n')
    out = tmp_path / "eval"
    assert main(["evaluate", f"annotations={ann}", f"predictions={preds}", f"output_dir={out}"]) == 2
    err = capsys.readouterr().err
    assert "preds.jsonl" in err and "line 2" in err
    assert not (out / "summary.json").exists()


def test_console_script_and_unknown_command() -> None:
    exe = Path(sys.executable).parent / "stvg"
    res = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=False)
    assert res.returncode == 0 and "evaluate" in res.stdout
    res = subprocess.run([str(exe), "frobnicate"], capture_output=True, text=True, check=False)
    assert res.returncode == 2 and "unknown command" in res.stderr


def test_synth_command_is_deterministic(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["synth", f"output_dir={a}", "num_videos=2", "seed=7"]) == 0
    assert main(["synth", f"output_dir={b}", "num_videos=2", "seed=7"]) == 0
    assert (a / "annotations.jsonl").read_bytes() == (b / "annotations.jsonl").read_bytes()
    assert (a / "hcstvg.json").is_file()
