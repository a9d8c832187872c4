"""docs/EXTENDING.md's three recipes, run as written from a temporary folder through the public entry points.

Each recipe's code block is written to its own module under ``tmp_path``, imported, exercised and
unregistered again, so the registries the other tests see are unchanged.
"""

from __future__ import annotations

import importlib
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stvg_plugin.adapters import benchmark_names, default_protocol, load_benchmark, unregister_benchmark
from stvg_plugin.cli import main
from stvg_plugin.data import AnnotationError, GroundingPrediction, write_jsonl
from stvg_plugin.metrics import evaluate, protocol_names, unregister_protocol
from stvg_plugin.models.families import family_for_model_type, family_names, get_family, unregister_family
from stvg_plugin.parsing import parse_answer
from stvg_plugin.prompts import resolve_style

DOC = Path(__file__).resolve().parents[1] / "docs" / "EXTENDING.md"
_BLOCK = re.compile(r"```python\n# (\w+)\.py\n(.*?)```", re.S)


def _recipes() -> dict[str, str]:
    return {name: code for name, code in _BLOCK.findall(DOC.read_text(encoding="utf-8"))}


@pytest.fixture
def extension(tmp_path: Path) -> Iterator:
    """Import one recipe from a temporary module; afterwards remove the module and what it registered."""
    folder = tmp_path / "ext"
    folder.mkdir()
    sys.path.insert(0, str(folder))
    imported: list[str] = []

    def load(name: str):
        (folder / f"{name}.py").write_text(_recipes()[name], encoding="utf-8")
        imported.append(name)
        return importlib.import_module(name)

    try:
        yield load
    finally:
        unregister_family("toy_vl")
        unregister_benchmark("toy_tvg")
        unregister_protocol("start_hit")
        for name in imported:
            sys.modules.pop(name, None)
        sys.path.remove(str(folder))
        importlib.invalidate_caches()


def test_the_doc_holds_the_three_recipes() -> None:
    assert sorted(_recipes()) == ["toy_benchmark", "toy_family", "toy_protocol"]


def test_recipe_family_resolves_by_model_type_and_its_prompt_and_answers_work(extension) -> None:
    assert "toy_vl" not in family_names()
    module = extension("toy_family")
    spec = family_for_model_type("toy_vl")  # what the prompted backend does with a checkpoint's config.json
    assert spec is module.FAMILY and get_family("toy_vl") is spec
    import transformers

    assert spec.model_cls() is transformers.Qwen2_5_VLForConditionalGeneration
    style = resolve_style(None, "toy_vl")  # PromptedGrounder's style lookup
    assert style is module.STYLE
    prompt = style.prefix([0.0, 0.5, 1.0]) + style.suffix("the dog jumps", 1.5)
    assert prompt.startswith("<|user|>\nThe video has 3 sampled frames:\nFrame 1 at 0.00 s: <toy_image>\n")
    assert prompt.count("<toy_image>") == 3 and '"the dog jumps"' in prompt
    assert prompt.endswith("<|end|>\n<|assistant|>\n") and "0 to 1000 scale" in prompt
    # the family's coordinate convention reads a 0-1000 box back into pixels of a 640x480 frame
    answer = parse_answer("Time: from 0.5 s to 1.0 s\nFrame 2: [100, 200, 500, 600]", duration_s=1.5, fps=2.0,
                          num_frames=3, width=640, height=480, sampled_timestamps=[0.0, 0.5, 1.0],
                          sampled_indices=[0, 1, 2], coord_hint=style.coord_hint())
    assert not answer.parse_failed and answer.span_s == (0.5, 1.0)
    assert answer.boxes == {1: [64.0, 96.0, 320.0, 288.0]}


def _toy_files(folder: Path) -> tuple[Path, Path]:
    csv_path = folder / "toy.csv"
    csv_path.write_text("q1,a.mp4,1.0,3.0,a person opens a door\n"
                        "q2,b.mp4,0.0,2.0,a dog runs\n"
                        "q3,c.mp4,4.0,6.0,someone sits down\n", encoding="utf-8")
    preds = folder / "preds.jsonl"
    write_jsonl(preds, [GroundingPrediction(qid="q1", span_s=(1.5, 3.0)),   # start off by 0.5 s: hit, tIoU 0.75
                        GroundingPrediction(qid="q2", span_s=(1.5, 2.0))])  # off by 1.5 s: miss, tIoU 0.25
    return csv_path, preds                                                   # q3: no prediction


def test_recipe_benchmark_is_read_by_the_adapter_registry_and_stvg_evaluate(extension, tmp_path: Path) -> None:
    assert "toy_tvg" not in benchmark_names()
    extension("toy_benchmark")
    assert "toy_tvg" in benchmark_names() and default_protocol("TOY-TVG") == "tvg"
    csv_path, preds = _toy_files(tmp_path)
    queries = load_benchmark("toy_tvg", csv_path)
    assert [(q.qid, q.task, q.span_s, Path(q.video).name) for q in queries] == [
        ("q1", "tvg", (1.0, 3.0), "a.mp4"), ("q2", "tvg", (0.0, 2.0), "b.mp4"), ("q3", "tvg", (4.0, 6.0), "c.mp4")]
    bad = tmp_path / "bad.csv"
    bad.write_text("q1,a.mp4,1.0,3.0,fine\nq2,b.mp4,5.0,2.0,reversed\n", encoding="utf-8")
    with pytest.raises(AnnotationError, match=r"bad\.csv \[entry line 2\]: start_s must be >= 0 and below end_s"):
        load_benchmark("toy_tvg", bad)
    skipped: list = []
    assert [q.qid for q in load_benchmark("toy_tvg", bad, on_error="skip", skipped=skipped)] == ["q1"]
    assert [s.entry for s in skipped] == ["line 2"]

    out = tmp_path / "eval"  # no protocol named: the benchmark's default (tvg)
    assert main(["evaluate", "benchmark=toy_tvg", f"annotations={csv_path}", f"predictions={preds}",
                 f"output_dir={out}"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["protocol"] == "tvg" and summary["num_queries"] == 3 and summary["num_missing"] == 1
    assert summary["mIoU"] == pytest.approx((0.75 + 0.25 + 0.0) / 3, rel=1e-12)


def test_recipe_protocol_scores_through_the_engine_and_stvg_evaluate(extension, tmp_path: Path) -> None:
    assert "start_hit" not in protocol_names()
    extension("toy_benchmark")
    extension("toy_protocol")
    assert "start_hit" in protocol_names()
    csv_path, preds = _toy_files(tmp_path)
    queries = load_benchmark("toy_tvg", csv_path)
    predictions = [GroundingPrediction(qid="q1", span_s=(1.5, 3.0)), GroundingPrediction(qid="q2", span_s=(1.5, 2.0)),
                   GroundingPrediction(qid="q3", raw_text="no idea")]
    result = evaluate(queries, predictions, protocol="start_hit")
    assert result.summary["start_hit_rate"] == pytest.approx(1 / 3, rel=1e-12)
    assert result.summary["mean_start_error_s"] == pytest.approx(1.0, rel=1e-12)  # (0.5 + 1.5) / 2; q3 has none
    assert result.summary["num_parse_failed"] == 1 and result.summary["num_missing"] == 0
    assert [(r["qid"], r["protocol"], r["start_hit"]) for r in result.per_query] == [
        ("q1", "start_hit", 1.0), ("q2", "start_hit", 0.0), ("q3", "start_hit", 0.0)]
    assert evaluate(queries, predictions, protocol="auto").summary["protocol"] == "tvg"  # defaults untouched

    out = tmp_path / "eval"
    assert main(["evaluate", "benchmark=toy_tvg", f"annotations={csv_path}", f"predictions={preds}",
                 "protocol=start_hit", f"output_dir={out}"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["protocol"] == "start_hit" and summary["start_hit_rate"] == pytest.approx(1 / 3, rel=1e-12)
    assert summary["num_missing"] == 1
