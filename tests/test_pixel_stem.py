"""``decoder_pixel_stem``: features read from the frames' pixels and added to the decoder's patch grid.

Why it exists (examples/learnability.md, session 10): the learnability runs that missed most often put the
box on the *other* object of a small target, a shape of ~13 px seen through 8-px patches and a 32-wide
SigLIP. These tests pin the wiring: a new stem adds nothing, its output lands on the right grid cell, the
frames it reads are the ones the vision tower read (per video, also when a micro-batch's videos are joined),
training and inference hand the decoder the same visual input, the option survives save/load, and a
configuration that cannot work says so in one line.
"""

from __future__ import annotations

import pytest
import torch
from close import ROUNDING_ULPS, assert_tensors_close

from stvg_plugin.data import read_queries
from stvg_plugin.models import build_tiny_model
from stvg_plugin.models.configuration_spacevllm import SpaceVLLMConfig
from stvg_plugin.models.modeling_spacevllm import SpaceVLLMForGrounding
from stvg_plugin.models.space_decoder import PixelStem
from stvg_plugin.video import sample_video

STEM = {"preset": "spacevllm_tiny", "num_frames": 4, "max_frames": 16, "frame_size": [64, 64],
        "span_source": "relevance", "decoder_dim": 32, "decoder_visual_source": "patches",
        "decoder_pixel_stem": True}


def _randomise(stem: PixelStem) -> None:
    """A trained stem's output is not zero; give the zero-started layer weights."""
    with torch.no_grad():
        stem.out.weight.normal_()
        stem.out.bias.normal_()


def test_new_stem_adds_nothing_and_its_output_sits_on_the_patch_under_it():
    torch.manual_seed(0)
    stem = PixelStem(out_dim=8)
    stem.out.weight.data.zero_()  # what the model's init does to a zero-start layer
    stem.out.bias.data.zero_()
    pixels = torch.randn(2, 3, 64, 64)
    assert torch.equal(stem(pixels, (8, 8)), torch.zeros(2, 64, 8))
    _randomise(stem)
    stem.out.bias.data.zero_()
    blank = torch.zeros(1, 3, 64, 64)
    marked = blank.clone()
    marked[0, :, 16:24, 40:48] = 1.0  # the patch in row 2, column 5 of the 8x8 grid
    diff = (stem(marked, (8, 8)) - stem(blank, (8, 8))).abs().sum(-1)[0]
    assert diff.argmax() == 2 * 8 + 5 and torch.count_nonzero(diff) == 1
    assert stem(pixels, (6, 6)).shape == (2, 36, 8)  # strides that miss the grid: pooled onto it


def test_training_and_inference_feed_the_decoder_the_pixel_features(synth_dir, monkeypatch):
    model = build_tiny_model(STEM).eval()
    _randomise(model.space_decoder.pixel_stem)
    q = read_queries(synth_dir / "annotations.jsonl")[0]
    sampled = sample_video(q.video, num_frames=4, size=(64, 64))
    seen = []
    forward = model.space_decoder.forward

    def spy(visual, *args, **kwargs):
        seen.append(visual[0])
        return forward(visual, *args, **kwargs)

    monkeypatch.setattr(model.space_decoder, "forward", spy)
    with torch.no_grad():
        model([model.prepare_inputs(sampled, q.query)])
        model.answer_queries(model.encode_video(sampled), [q.query])
        pixel_inputs = model.backbone.preprocess_frames(model.processor.frame_processor, sampled.frames)
        features = model.backbone.frame_features(pixel_inputs)
        expected = features.patches + model.space_decoder.pixel_stem(features.pixels, features.patch_grid_hw)
    assert torch.equal(features.pixels, pixel_inputs["pixel_values_videos"][0])  # the frames the tower read
    assert len(seen) == 2
    for got in seen:
        assert_tensors_close(got, expected, ulps=ROUNDING_ULPS)
    assert not torch.allclose(seen[0], features.patches)  # the stem's share is there


def test_joined_videos_get_their_own_frames(synth_dir):
    model = build_tiny_model(STEM)
    queries = read_queries(synth_dir / "annotations.jsonl")
    videos = sorted({q.video for q in queries})[:2]
    inputs = [model.backbone.preprocess_frames(model.processor.frame_processor,
                                               sample_video(v, num_frames=4, size=(64, 64)).frames) for v in videos]
    with torch.no_grad():
        joined = model.backbone.frame_features_many(inputs)
    for got, one in zip(joined, inputs):
        assert torch.equal(got.pixels, one["pixel_values_videos"][0])
    plain = build_tiny_model({**STEM, "decoder_pixel_stem": False})  # no stem: the frames are not kept
    assert plain.backbone.frame_features(inputs[0]).pixels is None


def test_pixel_stem_round_trips_and_refuses_what_cannot_work(tmp_path):
    model = build_tiny_model(STEM)
    _randomise(model.space_decoder.pixel_stem)
    model.save_pretrained(tmp_path / "m")
    loaded = SpaceVLLMForGrounding.from_pretrained(tmp_path / "m")
    assert loaded.config.decoder_pixel_stem
    for key, value in model.space_decoder.pixel_stem.state_dict().items():
        assert torch.equal(loaded.space_decoder.pixel_stem.state_dict()[key], value)
    plain = build_tiny_model({**STEM, "decoder_pixel_stem": False})
    assert plain.space_decoder.pixel_stem is None
    assert not any("pixel_stem" in k for k in plain.state_dict())  # older checkpoints keep their keys
    with pytest.raises(ValueError, match="decoder_visual_source='patches'"):
        SpaceVLLMConfig(decoder_pixel_stem=True, decoder_visual_source="hidden")
    # Qwen2.5-VL's pixel input is already cut into patches: no frames to hand over, one clear line when
    # the model is built (not at its first video)
    with pytest.raises(ValueError, match="qwen2_5_vl backbone hands over none"):
        build_tiny_model({"preset": "spacevllm_qwen2_5_vl_tiny", "decoder_visual_source": "patches",
                          "decoder_pixel_stem": True})
