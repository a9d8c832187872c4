"""Smoke of the benchmark harness: every bench module runs at smoke sizes and reports its rows.

The figures themselves come from `make bench` (BENCHMARKS.md); ratios at smoke sizes mean nothing,
so this checks only that each benchmark runs and reports a ratio against its target.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def test_run_all_quick_reports_every_benchmark(tmp_path: Path) -> None:
    env = {**os.environ, "FIFTYONE_DO_NOT_TRACK": "true"}
    res = subprocess.run([sys.executable, str(REPO / "bench" / "run_all.py"), "--quick"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=900, check=False)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    rows = json.loads((tmp_path / "outputs" / "bench" / "results.json").read_text())["rows"]
    benches = {r["bench"] for r in rows}
    assert {"bench_metrics", "bench_video", "bench_ground", "bench_fiftyone", "bench_model"} <= benches
    failed = [f"{r['bench']}: {r['details']}" for r in rows if r["name"] == "(failed)"]
    assert not failed, "\n".join(failed)
    assert all(isinstance(r["ratio"], (int, float)) for r in rows)


def test_space_decoder_bench_reports_both_attentions(capsys) -> None:
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import bench_space_decoder
    finally:
        sys.path.remove(str(REPO / "bench"))
    assert bench_space_decoder.main(["--rounds", "1", "--videos", "2", "--frames", "2", "--tokens", "4"]) == 0
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["name"] for r in rows] == ["space_decoder_text_attention", "space_decoder_query_attention"]
    assert all(r["ratio"] > 0 for r in rows)


@pytest.mark.parametrize("args", [["--model", "spacevllm_tiny"], ["--optimizer"]])
def test_train_step_bench_reports_its_contenders(args: list[str], capsys) -> None:
    """The batched-step bench on the tiny preset, and the fused-vs-loop AdamW comparison (one round)."""
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import bench_train_step
    finally:
        sys.path.remove(str(REPO / "bench"))
    assert bench_train_step.main(["--rounds", "1", "--batch", "2", "--threads", "1", *args]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    base = "batched_adamw_loop" if "--optimizer" in args else "per_example"
    assert row[f"{base}_s"] > 0 and row["batched_s"] > 0 and row["ratio"] > 0
    if "--optimizer" in args:
        assert row["batched_adamw_loop_optimizer_ms"] > 0 and row["batched_optimizer_ms"] > 0
    else:
        assert row["model"].startswith("spacevllm_tiny (the tiny preset)")
