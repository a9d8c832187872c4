"""LLaVA-OneVision / LLaVA-Video adapter (SigLIP + Qwen2): SpaceVLLM's base (notes §2, P/S).

Frames go through transformers' own ``get_video_features`` (vision tower -> projector -> 2x2
bilinear pooling), giving ``P = ceil(g/2)^2`` tokens per frame for a ``g x g`` patch grid (196 at
384 px / patch 14). The projector's output before the pooling (``g x g``, caught with a forward hook
so the path stays transformers' own) is offered to the space decoder as the finer grid (ours).

Two token layouts (``video_pool_mode`` / ``video_newline`` in the config, read from the checkpoint's
config when it carries lmms-lab's ``mm_spatial_pool_mode`` / ``mm_newline_position``):

* ``bilinear`` + ``none`` (default; transformers' LLaVA-OneVision): 196 tokens per frame. The single
  ``image_newline`` transformers appends after the whole video is dropped: our frames are interleaved
  with text and query tokens, so every frame already ends in text (ours).
* ``average`` + ``row``: lmms-lab LLaVA-Video's training layout, 2x2 average pooling of the projected
  27x27 grid to 13x13 and ``image_newline`` after every row: 13 x 14 = 182 tokens per frame. Use it
  with weights trained that way (the original LLaVA-Video release, converted).

How time reaches this backbone: as text. Every frame is preceded by ``frame_template`` ("Frame 3 at
12.50 s:"); LLaVA-Video has no temporal position ids (1-D RoPE over the flat sequence), and writing
the seconds is how its own video prompts give time ("...frames are located at 0.00s, 0.50s, ...").
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration
from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

from stvg_plugin.models.backbones.base import BackboneAdapter, FrameFeatures, tiny_text_config


def pixels_without_resize(processor: Any, frames: np.ndarray) -> torch.Tensor | None:
    """``processor(images=frames)["pixel_values"]``, bit for bit, in one vectorised step when the frames
    already have the processor's size (its resize is then PIL's identity); ``None`` otherwise.

    Why: the trainer decodes its frames at the model's size once and builds every step's inputs from
    them, and the PIL processor's per-frame round trip was most of that work (with the remembered token
    ids of the processor, a step's inputs take 9.2 ms instead of 21.9 ms: bench/bench_train_inputs.py,
    ~5 % of the demo model's training step). Only the PIL SigLIP processor (the
    one this adapter builds) with rescale + normalise and no crop or pad; the arithmetic is its own:
    ``uint8 -> float64 * rescale_factor -> float32``, then ``(x - mean) / std`` in float32
    (tests/test_frame_preprocessing.py checks equality).
    """
    if not isinstance(processor, SiglipImageProcessorPil) or not isinstance(frames, np.ndarray):
        return None
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        return None
    size = processor.size
    if processor.do_resize and (size.height, size.width) != tuple(frames.shape[1:3]):
        return None
    if not (processor.do_rescale and processor.do_normalize) or processor.do_center_crop or processor.do_pad:
        return None
    x = (torch.from_numpy(frames).to(torch.float64) * processor.rescale_factor).to(torch.float32)
    mean = torch.tensor(processor.image_mean, dtype=torch.float32)
    std = torch.tensor(processor.image_std, dtype=torch.float32)
    return ((x - mean) / std).permute(0, 3, 1, 2).contiguous()


class LlavaOnevisionAdapter(BackboneAdapter):
    name: ClassVar[str] = "llava_onevision"
    vlm_class = LlavaOnevisionForConditionalGeneration
    visual_token: ClassVar[str] = "<image>"
    can_hand_over_pixels: ClassVar[bool] = True

    @staticmethod
    def tiny_config(vocab_size: int, special_ids: dict[str, int]) -> LlavaOnevisionConfig:
        """SigLIP 32x32 px / patch 8 / width 32 + Qwen2 width 64, 2 layers: ~0.12 M parameters."""
        return LlavaOnevisionConfig(
            vision_config=dict(
                model_type="siglip_vision_model",
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=2,
                image_size=32,
                patch_size=8,
                vision_use_head=False,
            ),
            text_config=dict(model_type="qwen2", **tiny_text_config(vocab_size, special_ids)),
            image_token_index=special_ids["image"],
            video_token_index=special_ids["video"],
            vision_feature_layer=-1,
            vision_feature_select_strategy="full",
            tie_word_embeddings=False,
        )

    @staticmethod
    def large_config() -> LlavaOnevisionConfig:
        """LLaVA-Video-7B-Qwen2 dimensions: SigLIP-so400m/14 @384 + Qwen2-7B (hidden 3584, 28 layers)."""
        return LlavaOnevisionConfig(
            vision_config=dict(
                model_type="siglip_vision_model",
                hidden_size=1152,
                intermediate_size=4304,
                num_hidden_layers=26,
                num_attention_heads=16,
                image_size=384,
                patch_size=14,
                vision_use_head=False,
            ),
            text_config=dict(
                model_type="qwen2",
                vocab_size=152128,
                hidden_size=3584,
                intermediate_size=18944,
                num_hidden_layers=28,
                num_attention_heads=28,
                num_key_value_heads=4,
                max_position_embeddings=32768,
                rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
                eos_token_id=151645,
                pad_token_id=151643,
                bos_token_id=151643,
            ),
            image_token_index=151646,
            video_token_index=151647,
            vision_feature_layer=-1,
            vision_feature_select_strategy="full",
            tie_word_embeddings=False,
        )

    @staticmethod
    def build_frame_processor(frame_size: tuple[int, int]) -> SiglipImageProcessorPil:
        """Resize to the square SigLIP input and normalise with mean = std = 0.5 (SigLIP's)."""
        h, w = frame_size
        return SiglipImageProcessorPil(
            size={"height": int(h), "width": int(w)}, image_mean=[0.5] * 3, image_std=[0.5] * 3
        )

    @staticmethod
    def load_frame_processor(path: str | Path, frame_size: tuple[int, int] | None) -> SiglipImageProcessorPil:
        """Read size/mean/std from the checkpoint's (video_)preprocessor_config.json.

        LLaVA-OneVision's own image processor does "anyres" tiling meant for still images; video frames
        are a plain resize + normalise, which is what this processor does.
        """
        cfg: dict[str, Any] = {}
        for name in ("video_preprocessor_config.json", "preprocessor_config.json"):
            p = Path(path) / name
            if p.is_file():
                cfg = json.loads(p.read_text(encoding="utf-8"))
                break
        size = cfg.get("size") or {}
        if frame_size is not None:
            size = {"height": int(frame_size[0]), "width": int(frame_size[1])}
        elif "height" not in size:
            edge = int(size.get("shortest_edge", 384))
            size = {"height": edge, "width": edge}
        return SiglipImageProcessorPil(
            size=size, image_mean=cfg.get("image_mean", [0.5] * 3), image_std=cfg.get("image_std", [0.5] * 3)
        )

    pool_mode: str = "bilinear"
    newline: str = "none"

    def configure(self, config: Any) -> None:
        """Token layout from the config, else the checkpoint's lmms-lab keys, else transformers' default."""
        vlm_cfg = self.vlm.config
        pool = config.video_pool_mode or getattr(vlm_cfg, "mm_spatial_pool_mode", None) or "bilinear"
        newline = config.video_newline
        if newline is None:
            newline = "row" if getattr(vlm_cfg, "mm_newline_position", None) == "grid" else "none"
        if pool not in ("bilinear", "average"):
            raise ValueError(f"video pooling {pool!r} is not supported (bilinear | average)")
        self.pool_mode, self.newline = pool, newline
        # the frames ride along in FrameFeatures only for the decoder's pixel stem: kept otherwise, a
        # micro-batch's joined frames would stay alive through the LLM's forward and backward
        self.keep_pixels = bool(getattr(config, "decoder_pixel_stem", False))

    def preprocess_frames(self, processor: Any, frames: np.ndarray) -> dict[str, torch.Tensor]:
        pixels = pixels_without_resize(processor, frames)
        if pixels is None:
            pixels = processor(images=list(frames), return_tensors="pt")["pixel_values"]
        return {"pixel_values_videos": pixels[None]}  # [1, T, 3, H, W]

    frame_dims: ClassVar[dict[str, int]] = {"pixel_values_videos": 1}

    def count_frames(self, pixel_inputs: dict[str, torch.Tensor]) -> int:
        return int(pixel_inputs["pixel_values_videos"].shape[1])

    def _lmms_layout(self, patches: torch.Tensor, g: int) -> tuple[torch.Tensor, tuple[int, int], torch.Tensor | None]:
        """``[T, g*g, D]`` projected patches -> the configured pooling (+ row newlines): tokens, grid, cells."""
        t, _, d = patches.shape
        grid = patches.reshape(t, g, g, d).permute(0, 3, 1, 2)
        if self.pool_mode == "average":
            pooled = torch.nn.functional.avg_pool2d(grid, kernel_size=2, stride=2)  # lmms-lab get_2dPool
        else:
            size = math.ceil(g / 2)
            pooled = torch.nn.functional.interpolate(grid, size=(size, size), mode="bilinear")
        rows, cols = int(pooled.shape[-2]), int(pooled.shape[-1])
        tokens = pooled.permute(0, 2, 3, 1)  # [T, rows, cols, D]
        if self.newline != "row":
            return tokens.reshape(t, rows * cols, d), (rows, cols), None
        newline = self.vlm.model.image_newline.to(tokens.dtype)[None, None, None, :].expand(t, rows, 1, d)
        tokens = torch.cat([tokens, newline], dim=2).reshape(t, rows * (cols + 1), d)
        cells = torch.arange(rows * (cols + 1)).reshape(rows, cols + 1)[:, :cols].reshape(-1)
        return tokens, (rows, cols), cells

    def frame_features(self, pixel_inputs: dict[str, torch.Tensor]) -> FrameFeatures:
        pixels = pixel_inputs["pixel_values_videos"].to(self.vlm.device, self.vlm.model.vision_tower.dtype)
        num_frames = pixels.shape[1]
        cfg = self.vlm.config
        caught: list[torch.Tensor] = []
        hook = self.vlm.model.multi_modal_projector.register_forward_hook(lambda _m, _i, out: caught.append(out))
        try:
            feats = self.vlm.model.get_video_features(
                pixels,
                vision_feature_layer=cfg.vision_feature_layer,
                vision_feature_select_strategy=cfg.vision_feature_select_strategy,
            ).pooler_output
        finally:
            hook.remove()
        feats = feats[:, :-1]  # drop the trailing image_newline
        tokens = feats.reshape(num_frames, -1, feats.shape[-1])
        g = cfg.vision_config.image_size // cfg.vision_config.patch_size  # apply_pooling's grid
        pooled = math.ceil(g / 2)
        patches = caught[0].reshape(num_frames, -1, caught[0].shape[-1])
        grid_hw, cells = (pooled, pooled), None
        if patches.shape[1] != g * g:  # a "default" feature strategy or an odd grid: no finer grid to offer
            patches, patch_grid = tokens, (pooled, pooled)
        else:
            patch_grid = (g, g)
            if (self.pool_mode, self.newline) != ("bilinear", "none"):
                tokens, grid_hw, cells = self._lmms_layout(patches, g)
        return FrameFeatures(
            tokens=tokens,
            grid_hw=grid_hw,
            patches=patches,
            patch_grid_hw=patch_grid,
            cell_index=cells,
            pixels=pixels.reshape(-1, *pixels.shape[2:]) if self.keep_pixels else None,
        )
