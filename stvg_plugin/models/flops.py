"""FLOPs of our additions (query tokens + space decoder) vs the backbone forward, on the meta device.

Counted with ``torch.utils.flop_counter.FlopCounterMode`` while running the real modules on meta
tensors (shapes only: no weights, no memory), so the numbers follow the actual code paths:

* backbone = vision tower + projector on ``N`` frames, then the LLM over the prefix *without* query
  tokens + the instruction (what the plain video LLM would run);
* ours = the extra LLM cost of the ``N`` query tokens (same LLM, ``N`` more positions) + the space
  decoder for one query. Generation steps are excluded on both sides (the same for both).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from stvg_plugin.models.presets import build_meta_model


def _flops(fn: Any) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def _meta_pixels(model: Any, num_frames: int) -> dict[str, torch.Tensor]:
    """Pixel inputs of the backbone's processor, shaped for ``num_frames`` frames, on meta."""
    cfg = model.backbone.vlm.config
    if model.config.backbone == "qwen2_5_vl":
        vc = cfg.vision_config
        h, w = model.config.frame_size or [336, 336]
        gh, gw = h // vc.patch_size, w // vc.patch_size
        per_frame = gh * gw
        dim = vc.in_channels * vc.temporal_patch_size * vc.patch_size**2
        grid = torch.tensor([[1, gh, gw]] * num_frames)
        return {"pixel_values": torch.empty(num_frames * per_frame, dim, device="meta"), "image_grid_thw": grid}
    size = cfg.vision_config.image_size
    return {"pixel_values_videos": torch.empty(1, num_frames, 3, size, size, device="meta")}


@torch.no_grad()
def count_grounding_flops(
    model_cfg: Mapping[str, Any] | str = "spacevllm_llava_video_7b",
    num_frames: int = 64,
    text_tokens_per_frame: int = 12,
    instruction_tokens: int = 40,
    query_tokens: int = 12,
) -> dict[str, Any]:
    """FLOPs (multiply-add = 2) of backbone vs ours for one video and one query; ``share`` = ours / backbone."""
    model = build_meta_model(model_cfg)
    lm = model.backbone.language_model
    d = model.backbone.hidden_size
    pixels = _meta_pixels(model, num_frames)
    visual = torch.empty(0)

    def vision() -> None:
        nonlocal visual
        visual = model.backbone.frame_tokens(pixels)

    if "image_grid_thw" in pixels:
        # Qwen's vision tower derives its rotary/window indices from the grid with data-dependent ops that
        # cannot run on meta: count 2 x parameters x patches instead (no attention term: a lower bound on the
        # backbone, so the reported share errs high).
        vision_params = sum(t.numel() for t in model.backbone.vlm.model.visual.parameters())
        vision_flops = 2 * vision_params * int(pixels["pixel_values"].shape[0])
        merge = model.backbone.vlm.config.vision_config.spatial_merge_size
        p = int(pixels["image_grid_thw"][0].prod()) // merge**2
        method = "analytic"
    else:
        vision_flops = _flops(vision)
        p = int(visual.shape[1])
        method = "counted"
    base_len = num_frames * (p + text_tokens_per_frame) + instruction_tokens

    def run_lm(length: int) -> None:
        lm(
            inputs_embeds=torch.empty(1, length, d, device="meta"), use_cache=True
        )  # a cache skips the data-dependent packed-sequence check

    lm_base = _flops(lambda: run_lm(base_len))
    lm_with_queries = _flops(lambda: run_lm(base_len + num_frames))
    decoder = _flops(
        lambda: model.space_decoder(
            torch.empty(1, num_frames, p, d, device="meta"),
            torch.empty(1, num_frames, d, device="meta"),
            torch.empty(1, query_tokens, d, device="meta"),
        )
    )
    backbone = vision_flops + lm_base
    ours = (lm_with_queries - lm_base) + decoder
    return {
        "num_frames": num_frames,
        "visual_tokens_per_frame": p,
        "vision_flops_method": method,
        "backbone_flops": float(backbone),
        "vision_flops": float(vision_flops),
        "llm_flops": float(lm_base),
        "query_token_flops": float(lm_with_queries - lm_base),
        "decoder_flops": float(decoder),
        "ours_flops": float(ours),
        "share": float(ours / backbone),
    }
