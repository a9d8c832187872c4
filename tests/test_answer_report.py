"""`stvg evaluate` reports per family the parse-failure rate and the share of rescaled coordinates."""

from __future__ import annotations

import json
from pathlib import Path

from stvg_plugin.cli import main
from stvg_plugin.data import read_queries, write_jsonl
from stvg_plugin.parsing import parse_answer


def _pred(query, text: str, hint: str, backend: str):
    parsed = parse_answer(text, duration_s=query.duration_s, fps=query.fps, num_frames=query.num_frames,
                          width=query.width, height=query.height, coord_hint=hint)
    pred = parsed.to_prediction(query.qid)
    pred.extra["backend"] = backend
    return pred


def test_evaluate_reports_parse_failures_and_rescaling_per_family(synth_dir: Path, tmp_path: Path):
    queries = read_queries(synth_dir / "annotations.jsonl")[:4]
    q0, q1, q2, q3 = queries
    preds = [
        _pred(q0, "from 1 s to 2 s\n1 s: [100, 100, 500, 500]", "seconds+permille", "prompted:qwen3_vl"),  # rescaled
        _pred(q1, "I cannot see it.", "seconds+permille", "prompted:qwen3_vl"),  # unparsed
        _pred(q2, "from 1 s to 2 s\n1 s: [10, 10, 50, 50]", "seconds+pixels", "prompted:qwen2_5_vl"),  # original px
        _pred(q3, "from 1 s to 2 s\n1 s: [0.1, 0.1, 0.5, 0.5]", "seconds", "served:gpt"),  # relative: rescaled
    ]
    write_jsonl(tmp_path / "preds.jsonl", preds)
    out = tmp_path / "eval"
    code = main(["evaluate", f"annotations={synth_dir / 'annotations.jsonl'}", f"predictions={tmp_path / 'preds.jsonl'}",
                 f"output_dir={out}"])
    assert code == 0
    report = json.loads((out / "summary.json").read_text())["answers_by_family"]
    assert report["qwen3_vl"] == {"answers": 2, "parse_failed": 1, "parse_failure_rate": 0.5, "rescaled": 1,
                                  "rescaled_share": 0.5}
    assert report["qwen2_5_vl"]["rescaled"] == 0 and report["qwen2_5_vl"]["parse_failed"] == 0
    assert report["served:gpt"]["rescaled_share"] == 1.0


def test_model_core_predictions_add_no_report(synth_dir: Path, tmp_path: Path):
    queries = read_queries(synth_dir / "annotations.jsonl")[:2]
    write_jsonl(tmp_path / "preds.jsonl", [{"qid": q.qid, "span_frames": [0, 5]} for q in queries])
    out = tmp_path / "eval"
    assert main(["evaluate", f"annotations={synth_dir / 'annotations.jsonl'}",
                 f"predictions={tmp_path / 'preds.jsonl'}", f"output_dir={out}"]) == 0
    assert "answers_by_family" not in json.loads((out / "summary.json").read_text())
