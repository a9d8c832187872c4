"""The batched training forward equals the per-example one: losses, outputs and gradients to float rounding.

A micro-batch mixes what the trainer mixes: 16-frame ``stvg`` samples with answers of different lengths,
a ``tvg`` sample (span, no boxes) and one-frame ``rec`` samples (no answer), so the LLM batch is
right-padded, the decoder runs in two frame-count groups with padded query texts, and the outputs are
padded along the frames. Each example run alone (a batch of one: no padding, the single-example path) is
the reference. Floats follow tests/close.py; marked ``numerics`` (rerun under other kernels/threads).
Gradients: the batch loss is the mean of the examples' losses, so its gradient equals the mean of the
per-example gradients; each parameter's gradient is compared at its own magnitude.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from close import ROUNDING_ULPS, assert_tensors_close

from stvg_plugin.data import read_queries
from stvg_plugin.models import build_tiny_model
from stvg_plugin.models.losses import LOSS_KEYS
from stvg_plugin.training import prepare
from stvg_plugin.training.dataset import TrainData, expand_tasks

# the demo / learnability decoder: finer patches, space-time mixer, text match, centre loss on
LEARN = {"num_frames": 16, "max_frames": 16, "frame_size": [64, 64], "span_source": "relevance",
         "decoder_dim": 64, "decoder_visual_source": "patches", "decoder_temporal": True, "decoder_text_match": True}
WEIGHTS = {"lm": 0.3, "l1": 5.0, "giou": 2.0, "relevance": 1.0, "centre": 8.0}


def _mixed_examples(model, synth_dir: Path, n: int = 6):
    """``n`` training examples covering stvg, tvg and rec (drawn from the trainer's own stream)."""
    samples = expand_tasks(read_queries(synth_dir / "annotations.jsonl"), ["tvg", "rec"])
    data = TrainData(model, samples, {"stvg": 1.0, "tvg": 1.0, "rec": 1.0}, seed=3, num_workers=1)
    picked, seen = [], set()
    for step in range(50):
        for ex in data.examples(step, 2):
            if len(picked) < 3 or ex.task not in seen or len(picked) < n:
                picked.append(ex)
                seen.add(ex.task)
        if len(picked) >= n and seen == {"stvg", "tvg", "rec"}:
            break
    assert seen == {"stvg", "tvg", "rec"}
    return picked


def _grads(model) -> dict[str, torch.Tensor]:
    return {k: p.grad.detach().clone() for k, p in model.named_parameters() if p.grad is not None}


@pytest.mark.numerics
@pytest.mark.parametrize("preset", ["spacevllm_tiny", "spacevllm_qwen25vl_tiny"])
def test_batched_forward_equals_per_example(preset, synth_dir):
    model = build_tiny_model({"preset": preset, **LEARN})
    model.train()
    examples = _mixed_examples(model, synth_dir)
    inputs = [ex.inputs for ex in examples]
    lengths = {int(i.instruction.input_ids.shape[0]) + (0 if i.answer_ids is None else int(i.answer_ids.shape[0]))
               for i in inputs}
    assert len(lengths) > 1 and {len(i.timestamps) for i in inputs} == {1, 16}  # padding really happens

    batch = model(inputs, loss_weights=WEIGHTS)
    batch.loss.backward()
    batch_grads = _grads(model)
    model.zero_grad()

    singles, mean_grads = [], {}
    for x in inputs:
        out = model([x], loss_weights=WEIGHTS)
        (out.loss / len(inputs)).backward()
        singles.append(out)
    mean_grads = _grads(model)
    model.zero_grad()

    assert set(batch.example_losses) == {*LOSS_KEYS, "total"}
    for k, ex in enumerate(examples):
        t = len(ex.inputs.timestamps)
        one = singles[k]
        assert batch.frame_mask[k].tolist() == [True] * t + [False] * (16 - t)
        for key in (*LOSS_KEYS, "total"):
            assert_tensors_close(batch.example_losses[key][k], one.example_losses[key][0], f"{ex.task} {key}", scale=1.0)
        assert_tensors_close(batch.pred_boxes[k, :t], one.pred_boxes[0], f"{ex.task} boxes", scale=1.0)
        assert_tensors_close(batch.relevance_logits[k, :t], one.relevance_logits[0], f"{ex.task} relevance")
        assert_tensors_close(batch.token_logits[k, :t], one.token_logits[0], f"{ex.task} token logits")
    assert_tensors_close(batch.loss, torch.stack([o.loss for o in singles]).mean(), "batch loss", scale=1.0)
    assert batch_grads.keys() == mean_grads.keys() and len(batch_grads) > 20
    # a weight's gradient sums one term per position it acts at, over the whole batch (the vision tower's
    # patch embedding: every patch of every frame, ~6 000 terms here); reordering a sum of n float32 terms
    # moves it by ~sqrt(n) rounding steps (tests/close.py), so the bound grows with the batch's positions
    with torch.no_grad():
        n_terms = sum(model.backbone.frame_features(x.pixel_inputs).patches.shape[:2].numel() for x in inputs)
    ulps = max(ROUNDING_ULPS, math.ceil(math.sqrt(n_terms)))
    # the magnitude a gradient is computed at is its layer's: a bias in front of a softmax (attention keys,
    # the box head's token scores) has a gradient that is 0 in exact arithmetic, left as the rounding of
    # terms as large as the layer's weight gradient
    layer_scale: dict[str, float] = {}
    for name, grad in mean_grads.items():
        layer = name.rsplit(".", 1)[0]
        layer_scale[layer] = max(layer_scale.get(layer, 0.0), float(grad.abs().max()))
    for name, grad in mean_grads.items():
        scale = layer_scale[name.rsplit(".", 1)[0]]
        assert_tensors_close(batch_grads[name], grad, f"grad {name}", scale=scale, ulps=ulps)


def test_losses_weighted_once_with_the_given_weights(synth_dir):
    """``loss`` = the mean over examples of ``sum_k w_k * term_k`` with the caller's weights (the config's by
    default); an example without an answer contributes an LM term of exactly 0."""
    model = build_tiny_model({"preset": "spacevllm_tiny", **LEARN})
    examples = _mixed_examples(model, synth_dir)
    with torch.no_grad():
        out = model([ex.inputs for ex in examples], loss_weights=WEIGHTS)
        default = model([ex.inputs for ex in examples])
    per = out.example_losses
    expected = sum(WEIGHTS[k] * per[k] for k in LOSS_KEYS)
    assert_tensors_close(per["total"], expected, "total", scale=1.0)
    assert_tensors_close(out.loss, expected.mean(), "loss", scale=1.0)
    for k, ex in enumerate(examples):
        assert (per["lm"][k] == 0) == (ex.inputs.answer_ids is None)
    cfg = model.config
    config_weights = {"lm": cfg.loss_lm_weight, "l1": cfg.loss_l1_weight, "giou": cfg.loss_giou_weight,
                      "relevance": cfg.loss_relevance_weight, "centre": cfg.loss_centre_weight}
    assert config_weights != WEIGHTS
    assert_tensors_close(default.loss, sum(config_weights[k] * per[k] for k in LOSS_KEYS).mean(), "default", scale=1.0)


TRAIN = {"lr": 3e-3, "num_threads": 1, "warmup_steps": 0, "num_workers": 1, "device": "cpu", "max_grad_norm": 5.0,
         "loss_weights": WEIGHTS}


@pytest.mark.numerics
def test_trainer_batch_of_8_takes_the_step_of_8_accumulated_examples(synth_dir, tmp_path):
    """``batch_size=8, grad_accum=1`` (the demo's setting) sees the same examples and takes the same optimizer
    step as ``batch_size=1, grad_accum=8`` (the old one-example micro-steps): the logged losses and gradient
    norm of step 1, and the losses of step 2 (after the first update) agree to float rounding.

    (Weights are not compared element by element: Adam's first update is ~lr * sign(gradient), so an element
    whose gradient is rounding noise around 0 may move either way; its effect on the loss is nil.)"""
    qs = read_queries(synth_dir / "annotations.jsonl")
    model = {"preset": "spacevllm_tiny", **LEARN}
    mix = {"task_weights": {"stvg": 1.0, "rec": 0.3}, "derive_tasks": ["rec"]}
    runs = {}
    for name, (batch_size, grad_accum) in {"accumulated": (1, 8), "batched": (8, 1)}.items():
        trainer = {**TRAIN, "max_steps": 2, "batch_size": batch_size, "grad_accum": grad_accum}
        t = prepare(model, qs, tmp_path / name, trainer=trainer, resume=None, **mix)
        runs[name] = [t.train_step() for _ in range(2)]
    for ra, rb in zip(runs["accumulated"], runs["batched"]):
        for key in ("loss", "loss_lm", "loss_l1", "loss_giou", "loss_relevance", "loss_centre", "grad_norm"):
            assert_tensors_close(torch.tensor(rb[key]), torch.tensor(ra[key]), f"step {ra['step']} {key}", scale=1.0)
    assert runs["batched"][1]["loss"] != runs["batched"][0]["loss"]  # the first step changed the model
