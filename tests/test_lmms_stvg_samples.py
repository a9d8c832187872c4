"""The core's reader of lmms-eval ``stvg_*`` samples files (used by FiftyOne, ``stvg demo`` and lmms_tasks.results)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stvg_plugin.data import AnnotationError, GroundingPrediction, read_predictions
from stvg_plugin.formats.lmms_stvg_samples import (
    DETAIL_METRIC,
    find_samples,
    newest_samples_to_predictions,
    read_samples,
)


def _write_samples(path: Path, preds: list[GroundingPrediction]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [{"doc_id": i, "m_vIoU": 0.0, DETAIL_METRIC: {"qid": p.qid, "video": "/v.mp4", "prediction": p.to_json()}}
             for i, p in enumerate(preds)]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


PREDS = [GroundingPrediction(qid="a", span_frames=(2, 5), boxes={2: [1.0, 2.0, 3.0, 4.0]}, raw_text="t"),
         GroundingPrediction(qid="b", error="video not found")]


def test_lmms_tasks_writes_the_detail_key_the_core_reads() -> None:
    from lmms_tasks import common, results

    assert common.DETAIL_METRIC == DETAIL_METRIC
    assert results.read_samples is read_samples  # the wrapper's CLI re-exports the core reader


def test_read_samples_returns_the_scored_predictions(tmp_path: Path) -> None:
    path = _write_samples(tmp_path / "run" / "x_samples_stvg_synthetic.jsonl", PREDS)
    assert [p.to_json() for p in read_samples(path)] == [p.to_json() for p in PREDS]


def test_a_line_without_the_detail_is_named(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text('{"doc_id": 0, "filtered_resps": ["0-1 s"]}\n', encoding="utf-8")
    with pytest.raises(AnnotationError, match="line 1"):
        list(read_samples(path))


def test_newest_samples_file_becomes_the_predictions_jsonl(tmp_path: Path) -> None:
    out = tmp_path / "lmms"
    _write_samples(out / "m" / "20240101_samples_stvg_synthetic.jsonl", PREDS[:1])
    newest = _write_samples(out / "m" / "20250101_samples_stvg_synthetic.jsonl", PREDS)
    assert find_samples(out, "stvg_synthetic")[-1] == newest
    assert newest_samples_to_predictions(out, "stvg_other", tmp_path / "p.jsonl") is None
    assert newest_samples_to_predictions(out, "stvg_synthetic", tmp_path / "p.jsonl") == (newest, 2)
    assert [p.to_json() for p in read_predictions(tmp_path / "p.jsonl")] == [p.to_json() for p in PREDS]


def test_demo_converts_in_process_and_names_a_run_without_samples(tmp_path: Path) -> None:
    from stvg_plugin.commands.common import ConfigError
    from stvg_plugin.commands.demo import _samples_to_predictions

    out = tmp_path / "lmms"
    with pytest.raises(ConfigError, match="--log_samples"):
        _samples_to_predictions(out, "stvg_synthetic", tmp_path / "p.jsonl")
    _write_samples(out / "m" / "1_samples_stvg_synthetic.jsonl", PREDS)
    _samples_to_predictions(out, "stvg_synthetic", tmp_path / "p.jsonl")
    assert [p.qid for p in read_predictions(tmp_path / "p.jsonl")] == ["a", "b"]


def test_demo_step_runs_commands_and_in_process_calls_in_order(tmp_path: Path) -> None:
    import os
    import sys

    from stvg_plugin.commands.common import ConfigError
    from stvg_plugin.commands.demo import _Steps

    marker = tmp_path / "m.txt"
    order: list[str] = []
    steps = _Steps(total=2, env=dict(os.environ))
    steps.run("write then read", [sys.executable, "-c", f"open({str(marker)!r}, 'w').write('x')"],
              lambda: order.append(marker.read_text()))
    assert order == ["x"] and "write then read" in steps.times
    with pytest.raises(ConfigError, match="exit 3"):
        steps.run("fails", [sys.executable, "-c", "raise SystemExit(3)"], lambda: order.append("not reached"))
    assert order == ["x"]
