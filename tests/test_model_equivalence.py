"""Equivalence with transformers' own models at real width (issue 13, item 7).

Real hidden sizes, heads, vision configs and patch sizes of both 7B presets, 1 LLM + 1 vision layer,
random weights, CPU fp32, and a vocabulary cut to the test tokenizer's size (the embedding table is
a lookup: its length changes no computed value, and it saves ~4 GB per model). The adapter's visual
tokens and the prefix's last-layer hidden states must equal what transformers' own
``*ForConditionalGeneration`` computes from the same pixels and ids: the prefix layout's ids go to
transformers with its video/image placeholder at the visual positions, and the query positions
carry a text token whose embedding the query table copies. One real-width model at a time.
"""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch

from stvg_plugin.models.backbones import QUERY, VISUAL, get_backbone
from stvg_plugin.models.modeling_spacevllm import SpaceVLLMForGrounding
from stvg_plugin.models.presets import build_config, resolve_spec, use_tokenizer_vocab
from stvg_plugin.models.processing_spacevllm import SpaceVLLMProcessor
from stvg_plugin.models.tokenizer import build_tiny_tokenizer

pytestmark = pytest.mark.slow

# float32 sums over 3584 (LLM) / 1152-1280 (vision) channels of values of magnitude ~1-10: ~1e-6
# relative rounding; the same kernels run in the same order, so the differences are 0 or a few ulps
ATOL = 1e-5


def _real_width_model(preset: str, frames: int) -> SpaceVLLMForGrounding:
    tok = build_tiny_tokenizer("chars")
    # transformers' own LLaVA-OneVision layout (bilinear pooling, no row newlines): the lmms-lab layout the
    # preset defaults to is not what transformers computes (tests/test_model_llava_layout.py checks it)
    spec = {**resolve_spec(preset), "num_layers": 1, "num_frames": frames, "dtype": "float32",
            "video_pool_mode": "bilinear", "video_newline": "none"}
    config = build_config(spec)
    use_tokenizer_vocab(config.vlm_config, tok)
    torch.manual_seed(0)
    model = SpaceVLLMForGrounding(config)
    adapter = get_backbone(config.backbone)
    model.processor = SpaceVLLMProcessor(tok, adapter.frame_processor_for(config), config)
    return model.eval()


def _sample(model: SpaceVLLMForGrounding, frames: int):
    from stvg_plugin.video import SampledVideo, VideoInfo

    h, w = tuple(model.config.frame_size) if model.config.frame_size else (360, 640)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, size=(frames, h, w, 3), dtype=np.uint8)
    indices = np.arange(frames) * 15
    info = VideoInfo(path="synthetic", fps=30.0, num_frames=int(indices[-1]) + 1, width=w, height=h)
    return SampledVideo(frames=pixels, indices=indices, timestamps=indices / 30.0, info=info)


def _queries_as_text_token(model: SpaceVLLMForGrounding, token_id: int) -> None:
    """Every query row = the embedding of ``token_id``, so transformers sees the same inputs."""
    with torch.no_grad():
        model.st_query_embed.weight.copy_(model.backbone.embed_text(torch.tensor([token_id]))[0])


@pytest.mark.parametrize("preset", ["spacevllm_7b", "spacevllm_qwen25vl_7b"])
def test_visual_tokens_and_prefix_states_equal_transformers(preset: str) -> None:
    frames = 2
    model = _real_width_model(preset, frames)
    try:
        sampled = _sample(model, frames)
        text_id = int(model.processor.tokenizer.convert_tokens_to_ids("a"))
        _queries_as_text_token(model, text_id)
        vlm = model.backbone.vlm
        pixel_inputs = model.backbone.preprocess_frames(model.processor.frame_processor, sampled.frames)
        with torch.no_grad():
            embeds, position_ids, _, layout, features = model._prefix_embeddings(pixel_inputs, sampled.timestamps)
            ours = model.backbone.language_model(inputs_embeds=embeds, position_ids=position_ids).last_hidden_state[0]
        ids = layout.input_ids.clone()
        ids[layout.kinds == QUERY] = text_id
        length = ids.shape[0]
        caught: dict[str, torch.Tensor] = {}

        def catch(_module, _args, kwargs):  # the merged text + visual embeddings transformers feeds its LLM
            caught["embeds"] = kwargs["inputs_embeds"].detach().clone()

        hook = vlm.model.language_model.register_forward_pre_hook(catch, with_kwargs=True)
        try:
            with torch.no_grad():
                if model.config.backbone == "qwen2_5_vl":
                    # transformers' own M-RoPE from the ids and grids (its get_rope_index inside forward)
                    kinds = (layout.kinds == VISUAL).to(torch.int32)[None]
                    theirs = vlm.model(input_ids=ids[None], pixel_values=pixel_inputs["pixel_values"],
                                       image_grid_thw=pixel_inputs["image_grid_thw"], mm_token_type_ids=kinds)
                else:
                    # LLaVA-OneVision appends one image_newline after the video: one more placeholder at the
                    # very end (causal attention: earlier positions cannot see it)
                    ids[layout.kinds == VISUAL] = vlm.config.video_token_index
                    ids = torch.cat([ids, torch.tensor([vlm.config.video_token_index])])
                    theirs = vlm.model(input_ids=ids[None], pixel_values_videos=pixel_inputs["pixel_values_videos"])
        finally:
            hook.remove()
        visual_pos = layout.positions(VISUAL)
        their_visual = caught["embeds"][0, visual_pos].reshape(features.tokens.shape)
        torch.testing.assert_close(features.tokens, their_visual, atol=ATOL, rtol=0)
        their_hidden = theirs.last_hidden_state[0, :length]
        scale = float(their_hidden.abs().max())
        assert scale > 0.1  # a real signal, not all zeros
        torch.testing.assert_close(ours, their_hidden, atol=ATOL * max(1.0, scale / 10), rtol=0)
        print(f"{preset}: max |diff| visual tokens {float((features.tokens - their_visual).abs().max()):.2e}, "
              f"prefix states {float((ours - their_hidden).abs().max()):.2e} (max |state| {scale:.2f})")
        assert features.tokens.shape[0] == frames and int(layout.kinds.eq(QUERY).sum()) == frames
    finally:
        del model
        gc.collect()
