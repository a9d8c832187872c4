"""Backbone adapters: Qwen2.5-VL on a tiny random config, 7B configs on the meta device, FLOP share.

Tests marked ``numerics`` compare two computations of one output to float32 rounding (tests/close.py);
``make test`` reruns them under other ATen CPU kernels (ATEN_CPU_CAPABILITY=default, avx2) and 1 and 2
torch threads, so a tolerance that holds on one CPU only fails here.
"""

from __future__ import annotations

import pytest
import torch
from close import assert_same_prediction, assert_tensors_close

from stvg_plugin.data import read_queries
from stvg_plugin.models import Grounder, build_meta_model, build_tiny_model, load_grounder
from stvg_plugin.models.backbones import BACKBONES, VISUAL
from stvg_plugin.models.flops import count_grounding_flops
from stvg_plugin.video import sample_video


@pytest.fixture(scope="module")
def query(synth_dir):
    return read_queries(synth_dir / "annotations.jsonl")[1]


@pytest.fixture(scope="module")
def sampled(query):
    return sample_video(query.video, num_frames=8, size=(32, 32))


def test_registry_lists_both_backbones():
    assert set(BACKBONES) >= {"llava_onevision", "qwen2_5_vl"}


def test_qwen25vl_adapter_one_group_and_query_per_frame(sampled):
    model = build_tiny_model("spacevllm_qwen25vl_tiny")
    pixels = model.backbone.preprocess_frames(model.processor.frame_processor, sampled.frames)
    assert pixels["image_grid_thw"].tolist() == [[1, 4, 4]] * 8  # one image per frame, 4x4 patches
    # temporal patch 2: the processor duplicated every frame in time (patch vector = 3 x 2 x 8 x 8)
    assert pixels["pixel_values"].shape == (8 * 16, 3 * 2 * 8 * 8)
    tokens = model.backbone.frame_tokens(pixels)
    assert tokens.shape == (8, 4, 64)
    prefix = model.encode_video(sampled)
    text = model.processor.tokenizer.decode(prefix.layout.input_ids.tolist())
    assert text.count("<|vision_start|>") == 8 and "Frame 7 at" in text
    # M-RoPE: 3-D positions from transformers' get_rope_index; text continues after the largest one
    pos, nxt = model.backbone.prefix_position_ids(prefix.layout.kinds, pixels)
    assert pos.shape == (3, 1, prefix.length) and nxt == int(pos.max()) + 1 and nxt < prefix.length
    vis = prefix.layout.positions(VISUAL)[:4]
    assert pos[1, 0, vis].tolist() != pos[2, 0, vis].tolist()  # height/width ids differ inside a frame


@pytest.mark.numerics
def test_qwen25vl_ground_many_equals_one_by_one_and_training_path(sampled, query):
    model = build_tiny_model("spacevllm_qwen25vl_tiny")
    prefix = model.encode_video(sampled)
    queries = ["the red circle", "the blue square"]
    many = [Grounder(model).ground_prefix(prefix, q) for q in queries]
    for q, p in zip(queries, many):
        single = Grounder(model).ground_prefix(model.encode_video(sampled), q)
        assert_same_prediction(p, single, max(query.width, query.height))  # encoded once vs again
    out = model(model.prepare_inputs(sampled, queries[0], "from 0.5 s to 1.0 s"))
    assert out.pred_boxes.shape == (1, 8, 4) and torch.isfinite(out.loss)
    out.loss.backward()
    assert model.st_query_embed.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("preset", ["spacevllm_7b", "spacevllm_qwen25vl_7b"])
def test_7b_configs_build_on_meta(preset):
    model = build_meta_model(preset)
    assert model.st_query_embed.weight.device.type == "meta"
    assert model.backbone.hidden_size == 3584
    assert model.st_query_embed.weight.shape == (65, 3584)
    n = sum(p.numel() for p in model.parameters())
    assert 7.5e9 < n < 9.5e9, n
    ours = sum(p.numel() for p in model.st_query_embed.parameters()) + sum(
        p.numel() for p in model.space_decoder.parameters()
    )
    assert ours < 0.005 * n


def test_llava_7b_flop_share_of_queries_and_decoder_is_small():
    r = count_grounding_flops("spacevllm_7b", num_frames=64)
    assert r["visual_tokens_per_frame"] == 182  # 27x27 SigLIP patches, 2x2 average pooling -> 13x13 + 13 row newlines
    assert r["vision_flops_method"] == "counted"
    assert r["query_token_flops"] > 0 and r["decoder_flops"] > 0
    assert r["share"] <= 0.05


def test_large_preset_without_weights_is_a_clear_error():
    from stvg_plugin.data import StvgError

    with pytest.raises(StvgError, match="backbone_path"):
        load_grounder("spacevllm_7b")
    with pytest.raises(ValueError, match="unknown model preset"):
        load_grounder("nope")


def test_backbone_path_keeps_pretrained_weights(tmp_path):
    """A base-VLM checkpoint folder (as transformers writes it) + fresh queries/decoder, weights untouched."""
    src = build_tiny_model("spacevllm_tiny")
    src.backbone.vlm.save_pretrained(tmp_path)
    src.processor.tokenizer.save_pretrained(tmp_path)
    src.processor.frame_processor.save_pretrained(tmp_path)
    g = load_grounder({"preset": "spacevllm_tiny", "backbone_path": str(tmp_path), "dtype": "float32", "seed": 1})
    expected = src.backbone.state_dict()
    for k, v in g.model.backbone.state_dict().items():
        assert torch.equal(v, expected[k]), k
    assert not torch.equal(g.model.st_query_embed.weight, src.st_query_embed.weight)  # seed 1 vs 0


@pytest.mark.numerics
def test_patches_source_gives_the_decoder_the_grid_before_pooling(sampled):
    """LLaVA-OneVision: 32 px / patch 8 = a 4x4 patch grid, pooled to 2x2 tokens for the LLM; Qwen: tokens."""
    llava = build_tiny_model({"preset": "spacevllm_tiny", "decoder_visual_source": "patches"})
    feats = llava.backbone.frame_features(llava.backbone.preprocess_frames(llava.processor.frame_processor,
                                                                           sampled.frames))
    assert feats.tokens.shape == (8, 4, 64) and feats.grid_hw == (2, 2)
    assert feats.patches.shape == (8, 16, 64) and feats.patch_grid_hw == (4, 4)
    # the pooled tokens are transformers' bilinear 2x2 pooling of exactly these patches
    grid = feats.patches.reshape(8, 4, 4, 64).permute(0, 3, 1, 2)
    pooled = torch.nn.functional.interpolate(grid, size=(2, 2), mode="bilinear").permute(0, 2, 3, 1).reshape(8, 4, 64)
    assert_tensors_close(pooled, feats.tokens, "pooled patches")
    prefix = llava.encode_video(sampled)
    assert prefix.visual_states.shape == (8, 16, 64) and prefix.visual_grid == (4, 4)
    out = llava(llava.prepare_inputs(sampled, "the red circle", "from 0.5 s to 1.0 s"))
    assert out.pred_boxes.shape == (1, 8, 4) and torch.isfinite(out.loss)

    qwen = build_tiny_model({"preset": "spacevllm_qwen25vl_tiny", "decoder_visual_source": "patches"})
    prefix = qwen.encode_video(sampled)
    assert prefix.visual_states.shape == (8, 4, 64) and prefix.visual_grid == (2, 2)
