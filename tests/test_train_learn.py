"""A short learnability run: the tiny model trained for about a minute grounds unseen synthetic videos above chance.

The full version (examples/learnability.py, numbers in examples/learnability.md) trains for minutes;
this one checks the direction on every ``make test``: held-out scores under the tubedetr protocol
beat seeded random predictions by a wide margin on the temporal side and clearly on vIoU.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from stvg_plugin.data import read_queries
from stvg_plugin.metrics import evaluate
from stvg_plugin.models import load_grounder
from stvg_plugin.synth import generate_synthetic
from stvg_plugin.training import fit
from stvg_plugin.training.baselines import random_predictions

SYNTH = {"max_queries_per_video": 1, "max_distractors": 1, "duration_s": (4.0, 6.0), "write_hcstvg_json": False}
MODEL = {"preset": "spacevllm_tiny", "num_frames": 16, "span_source": "relevance", "decoder_visual_source": "patches",
         "decoder_temporal": True, "decoder_text_match": True}
TRAINER = {"max_steps": 400, "lr": 3e-3, "batch_size": 4, "grad_accum": 1, "warmup_steps": 20, "num_threads": 1, "num_workers": 1,
           "max_grad_norm": 5.0, "device": "cpu", "loss_weights": {"lm": 0.3, "centre": 5.0}}


@pytest.mark.slow
def test_tiny_model_learns_to_ground_held_out_videos(tmp_path: Path) -> None:
    train = read_queries(generate_synthetic(tmp_path / "train", num_videos=60, seed=11, **SYNTH))
    val = read_queries(generate_synthetic(tmp_path / "val", num_videos=16, seed=12, **SYNTH))
    summary = fit(MODEL, train, tmp_path / "run", trainer=TRAINER, resume=None)
    preds = list(load_grounder(MODEL, checkpoint=summary["final"]).predict(val, progress=False))
    assert not any(p.error for p in preds)
    model = evaluate(val, preds).summary
    chance = evaluate(val, list(random_predictions(val, seed=0))).summary
    print(f"held-out model {model['m_tIoU']:.3f}/{model['m_vIoU']:.3f} vs chance {chance['m_tIoU']:.3f}/{chance['m_vIoU']:.3f}")
    # measured here: 0.690 / 0.225 vs chance 0.303 / 0.024 (before the centre target: 0.584 / 0.101)
    assert model["m_tIoU"] >= chance["m_tIoU"] + 0.2
    assert model["m_tIoU"] >= 0.55
    assert model["m_vIoU"] >= 5 * chance["m_vIoU"]
