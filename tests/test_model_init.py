"""Initialisation of the space decoder's zero-start layers inside transformers' ``_init_weights``: a fresh
model starts from the soft-argmax centre, a loaded checkpoint keeps its trained values, and a checkpoint
saved before a zero-start layer existed gets that layer at zero (a new path that begins as a no-op)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from stvg_plugin.models import SpaceVLLMForGrounding, build_tiny_model

SPEC = {"preset": "spacevllm_tiny", "decoder_text_match": True, "decoder_temporal": True}


def _zero_start_params(model) -> dict[str, torch.Tensor]:
    dec = model.space_decoder
    return {"box_offset.weight": dec.box_head[-1].weight[:2], "box_offset.bias": dec.box_head[-1].bias[:2],
            "text_key.weight": dec.text_key.weight, "relevance_from_match.weight": dec.relevance_from_match.weight,
            "mixer.weight": dec.temporal.mix.weight, "mixer.bias": dec.temporal.mix.bias}


def test_fresh_model_starts_at_zero_and_checkpoint_keeps_trained_values(tmp_path: Path):
    model = build_tiny_model(SPEC)
    for name, p in _zero_start_params(model).items():
        assert torch.count_nonzero(p) == 0, name
    assert torch.count_nonzero(model.space_decoder.box_head[-1].weight[2:]) > 0  # width/height rows drawn as usual
    with torch.no_grad():
        for p in _zero_start_params(model).values():
            p.normal_()
    model.save_pretrained(tmp_path / "m")
    loaded = SpaceVLLMForGrounding.from_pretrained(tmp_path / "m")
    for name, p in _zero_start_params(loaded).items():
        assert torch.equal(p, _zero_start_params(model)[name]), name


def test_checkpoint_without_a_zero_start_layer_gets_it_at_zero(tmp_path: Path):
    model = build_tiny_model({"preset": "spacevllm_tiny", "decoder_temporal": True})
    with torch.no_grad():
        model.space_decoder.box_head[-1].weight.normal_()
    model.save_pretrained(tmp_path / "old")
    # an older checkpoint: no text-match layers; opening it with text match on adds them (zero-start)
    config = json.loads((tmp_path / "old" / "config.json").read_text())
    config["decoder_text_match"] = True
    (tmp_path / "old" / "config.json").write_text(json.dumps(config))
    weights = tmp_path / "old" / "model.safetensors"
    state = load_file(weights)
    assert not any("text_key" in k for k in state)
    save_file(state, weights, metadata={"format": "pt"})
    loaded = SpaceVLLMForGrounding.from_pretrained(tmp_path / "old")
    assert torch.count_nonzero(loaded.space_decoder.text_key.weight) == 0
    assert torch.equal(loaded.space_decoder.box_head[-1].weight, model.space_decoder.box_head[-1].weight)
