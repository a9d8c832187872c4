"""lmms-eval's own ``qwen2_5_vl`` and ``qwen3_vl`` models run our ``stvg_*`` tasks through the real CLI.

Tiny random checkpoints (saved with save_pretrained, tokenizer and image processor included) of each
family; the stock models read the video themselves (``qwen_vl_utils``, which needs torchvision), so the
run goes through ``stvg lmms-eval`` in the side venv ``.venv-vision/`` (tests/vision_venv.py says why).
Each model must get its own prompt variant (lmms-eval's ``lmms_eval_specific_kwargs`` keyed by the
model name), and its answers must be scored, with no error, to the numbers ``stvg evaluate`` gives.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from close import isclose
from vision_venv import vision_env, vision_python

from lmms_tasks.results import find_samples, read_samples
from stvg_plugin.adapters import load_benchmark
from stvg_plugin.metrics import evaluate
from stvg_plugin.models.families import get_family
from stvg_plugin.models.prompted import build_tiny_prompted
from stvg_plugin.prompts import STOCK_BOX_SCALE_TEXT
from stvg_plugin.synth import generate_synthetic

pytestmark = pytest.mark.slow

TIMEOUT_S = 420
TASK = "stvg_synthetic"
# the coordinate system each stock model is asked for (its variant in _default_template_stvg_yaml)
ASKED_SCALE = {"qwen2_5_vl": "pixels", "qwen3_vl": "permille"}


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("stock_synth")
    generate_synthetic(out, num_videos=2, seed=3)
    return out


@pytest.mark.parametrize("model", sorted(ASKED_SCALE))
def test_stock_lmms_model_runs_the_stvg_task_with_its_prompt_variant(model: str, synth: Path, tmp_path: Path):
    ckpt = build_tiny_prompted(tmp_path / f"tiny_{model}", seed=0, family=model)
    out = tmp_path / "out"
    cmd = [str(vision_python()), "-m", "stvg_plugin.cli", "lmms-eval", "--model", model,
           "--model_args", f"pretrained={ckpt},device=cpu,device_map=cpu,max_num_frames=4",
           "--tasks", TASK, "--gen_kwargs", "max_new_tokens=24", "--batch_size", "1",
           "--output_path", str(out), "--log_samples"]
    env = vision_env(STVG_SYNTHETIC_DIR=str(synth), HF_DATASETS_CACHE=str(tmp_path / "hf_datasets"))
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]

    files = sorted(out.glob("**/*_results.json"))
    assert len(files) == 1, files
    results = json.loads(files[0].read_text())["results"][TASK]
    queries = load_benchmark("unified", str(synth / "annotations.jsonl"))
    assert results["error,none"] == 0 and results["missing_video,none"] == 0
    assert 0.0 <= results["m_vIoU,none"] <= 1.0 and 0.0 <= results["m_tIoU,none"] <= 1.0

    samples_file = find_samples(out, TASK)[0]
    samples = [json.loads(line) for line in samples_file.read_text().splitlines() if line.strip()]
    assert len(samples) == len(queries)
    some = queries[0]
    height, width = some.height, some.width
    if model == "qwen2_5_vl":  # told the size of its smart-resized input (the stock model's pixel defaults)
        height, width = get_family("qwen2_5_vl").answer_frame_size(height, width, min_pixels=200704, max_pixels=1605632)
    asked = STOCK_BOX_SCALE_TEXT[ASKED_SCALE[model]].format(width=width, height=height)
    for sample in samples:
        assert asked in sample["input"], sample["input"]  # lmms-eval picked this model's prompt variant
        prediction = sample["queries"]["prediction"]
        assert prediction.get("error") is None and prediction["raw_text"] is not None  # answered, parsed or flagged

    # what lmms-eval reports is what `stvg evaluate` computes from the logged answers
    preds = list(read_samples(samples_file))
    assert sorted(p.qid for p in preds) == sorted(q.qid for q in queries)
    summary = evaluate(queries, preds).summary
    for name in ("m_tIoU", "m_vIoU", "vIoU@0.3", "vIoU@0.5"):
        assert isclose(results[f"{name},none"], summary[name], dtype=np.float64, ulps=len(queries)), name
