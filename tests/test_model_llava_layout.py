"""LLaVA-Video token layouts (issue 13, item 6): transformers' bilinear 14x14 by default, lmms-lab's
2x2 average pooling to 13x13 + a newline per row (182 tokens per frame at 384 px) on request or from
the checkpoint config."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stvg_plugin.models import Grounder
from stvg_plugin.models.presets import build_meta_model, build_tiny_model
from stvg_plugin.video import SampledVideo, VideoInfo

LMMS = {"video_pool_mode": "average", "video_newline": "row"}


def _sample(frames: int = 4, size: int = 32) -> SampledVideo:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, size=(frames, size, size, 3), dtype=np.uint8)
    idx = np.arange(frames) * 10
    return SampledVideo(frames=pixels, indices=idx, timestamps=idx / 10.0,
                        info=VideoInfo(path="x", fps=10.0, num_frames=int(idx[-1]) + 1, width=size, height=size))


TRANSFORMERS = {"video_pool_mode": "bilinear", "video_newline": "none"}


@pytest.mark.parametrize(
    ("overrides", "tokens", "grid"),
    [({}, 182, (13, 13)), (TRANSFORMERS, 196, (14, 14)), ({"video_newline": "none"}, 169, (13, 13))],
)
def test_7b_tokens_per_frame(overrides: dict, tokens: int, grid: tuple[int, int]) -> None:
    # the preset's default is LLaVA-Video's own layout; transformers' OneVision layout on request
    model = build_meta_model({"preset": "spacevllm_7b", **overrides})
    pixels = {"pixel_values_videos": torch.empty(1, 2, 3, 384, 384, device="meta")}
    features = model.backbone.frame_features(pixels)
    assert features.tokens.shape[:2] == (2, tokens) and features.grid_hw == grid
    if tokens == 182:
        assert features.cell_index is not None and len(features.cell_index) == 169


def test_lmms_layout_is_average_pooling_plus_row_newlines_and_the_decoder_sees_only_cells() -> None:
    model = build_tiny_model({"preset": "spacevllm_tiny", **LMMS})  # 32 px / patch 8: a 4x4 grid -> 2x2 (+2)
    sampled = _sample()
    pixels = model.backbone.preprocess_frames(model.processor.frame_processor, sampled.frames)
    with torch.no_grad():
        features = model.backbone.frame_features(pixels)
    t, d = 4, model.config.hidden_size
    assert features.tokens.shape == (t, 6, d) and features.grid_hw == (2, 2)
    grid = features.patches.reshape(t, 4, 4, d)
    manual = grid.reshape(t, 2, 2, 2, 2, d).mean(dim=(2, 4))  # [t, 2, 2, d]: 2x2 blocks averaged
    tokens = features.tokens.reshape(t, 2, 3, d)
    torch.testing.assert_close(tokens[:, :, :2], manual, atol=1e-6, rtol=1e-5)
    newline = model.backbone.vlm.model.image_newline
    assert torch.equal(tokens[:, :, 2], newline.expand(t, 2, d))
    assert features.cell_index.tolist() == [0, 1, 3, 4]
    with torch.no_grad():
        prefix = model.encode_video(sampled)
        pred = Grounder(model).ground_prefix(prefix, "the red circle")
    assert prefix.visual_states.shape == (t, 4, d) and prefix.visual_grid == (2, 2)
    assert int((prefix.layout.kinds == 1).sum()) == t * 6  # newlines are in the LLM's sequence
    assert pred.qid == ""


def test_layout_is_read_from_the_checkpoint_config() -> None:
    model = build_tiny_model("spacevllm_tiny")
    assert (model.backbone.pool_mode, model.backbone.newline) == ("bilinear", "none")
    model.backbone.vlm.config.mm_spatial_pool_mode = "average"
    model.backbone.vlm.config.mm_newline_position = "grid"
    model.backbone.configure(model.config)
    assert (model.backbone.pool_mode, model.backbone.newline) == ("average", "row")
    with pytest.raises(ValueError, match="video_pool_mode"):
        build_tiny_model({"preset": "spacevllm_tiny", "video_pool_mode": "max"})
