"""Qwen2.5-VL adapter: frames are fed as separate *images*, one query token per frame.

Qwen2.5-VL's video path merges frame pairs (temporal patch size 2), which would leave one visual
group per *two* frames. Feeding each frame as an image keeps one group, hence one query, per frame
(notes §4, as Open-o3 Video does); the image processor then duplicates every frame along time to
fill the 2-frame temporal patch, which doubles the patch-embedding input but not the LLM tokens.
Position ids are Qwen's 3-D M-RoPE from transformers' own ``get_rope_index`` (images: no temporal
spacing; the frame's time is in the prompt text instead).

How time reaches this backbone, and why: as text ("Frame 3 at 12.50 s: <|vision_start|>...").
Qwen2.5-VL's video path gives *absolute time ids* (M-RoPE temporal positions spaced by
``tokens_per_second`` x seconds per 2-frame group), but only per frame *pair*; fed as images, each
frame's temporal position just follows the sequence, so the seconds are written in the prompt, as
Open-o3 Video does. Frames keep their aspect ratio: Qwen's smart resize under ``min_pixels`` /
``max_pixels`` (see :meth:`Qwen25VLAdapter.build_frame_processor`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from stvg_plugin.models.backbones.base import VISUAL, BackboneAdapter, FrameFeatures, tiny_text_config


class Qwen25VLAdapter(BackboneAdapter):
    name: ClassVar[str] = "qwen2_5_vl"
    vlm_class = Qwen2_5_VLForConditionalGeneration
    visual_token: ClassVar[str] = "<|image_pad|>"
    frame_template: ClassVar[str] = "Frame {index} at {time:.2f} s: <|vision_start|>"
    frame_suffix: ClassVar[str] = "<|vision_end|>\n"

    @staticmethod
    def tiny_config(vocab_size: int, special_ids: dict[str, int]) -> Qwen2_5_VLConfig:
        """Vision width 32 / patch 8 / merge 2 (32x32 px -> 4 tokens) + text width 64, 2 layers."""
        return Qwen2_5_VLConfig(
            vision_config=dict(
                depth=2,
                hidden_size=32,
                intermediate_size=64,
                num_heads=2,
                patch_size=8,
                spatial_merge_size=2,
                temporal_patch_size=2,
                window_size=32,
                out_hidden_size=64,
                fullatt_block_indexes=[1],
                in_channels=3,
            ),
            text_config=dict(
                **tiny_text_config(vocab_size, special_ids),
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
            ),
            image_token_id=special_ids["image_pad"],
            video_token_id=special_ids["video"],
            vision_start_token_id=special_ids["vision_start"],
            vision_end_token_id=special_ids["vision_end"],
            tie_word_embeddings=False,
        )

    @staticmethod
    def large_config() -> Qwen2_5_VLConfig:
        """Qwen2.5-VL-7B-Instruct dimensions (vision depth 32 / width 1280; text 3584 x 28 layers)."""
        return Qwen2_5_VLConfig(
            vision_config=dict(
                depth=32,
                hidden_size=1280,
                intermediate_size=3420,
                num_heads=16,
                patch_size=14,
                spatial_merge_size=2,
                temporal_patch_size=2,
                window_size=112,
                out_hidden_size=3584,
                fullatt_block_indexes=[7, 15, 23, 31],
                in_channels=3,
                tokens_per_second=2,
            ),
            text_config=dict(
                vocab_size=152064,
                hidden_size=3584,
                intermediate_size=18944,
                num_hidden_layers=28,
                num_attention_heads=28,
                num_key_value_heads=4,
                max_position_embeddings=128000,
                rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
                eos_token_id=151645,
                pad_token_id=151643,
                bos_token_id=151643,
            ),
            image_token_id=151655,
            video_token_id=151656,
            vision_start_token_id=151652,
            vision_end_token_id=151653,
            tie_word_embeddings=False,
        )

    @staticmethod
    def build_frame_processor(
        frame_size: tuple[int, int] | None,
        patch_size: int = 8,
        *,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
    ) -> Qwen2VLImageProcessorPil:
        """Qwen's own image processor: its *smart resize* keeps each frame's aspect ratio, rounds both
        sides to multiples of ``patch_size * 2`` (28 px at 7B) and scales the pixel count into
        ``[min_pixels, max_pixels]`` (a 640x360 frame becomes 448x252 under a 336^2 budget), as
        Qwen2.5-VL was trained. Without bounds, ``frame_size``'s area is both bounds (tiny presets:
        frames already arrive at ``frame_size``). ``patch_size`` must be the vision config's (14 at 7B).
        """
        if min_pixels is None and max_pixels is None:
            if frame_size is None:
                raise ValueError("the qwen2_5_vl frame processor needs frame_size or min_pixels/max_pixels")
            min_pixels = max_pixels = int(frame_size[0]) * int(frame_size[1])
        return Qwen2VLImageProcessorPil(
            patch_size=patch_size,
            merge_size=2,
            temporal_patch_size=2,
            min_pixels=min_pixels,
            max_pixels=max_pixels,
            image_mean=[0.5] * 3,
            image_std=[0.5] * 3,
        )

    @classmethod
    def frame_processor_for(cls, config: Any) -> Qwen2VLImageProcessorPil:
        """Patch size from the vision config (a fixed 8 crashed the 7B preset) and the config's pixel bounds."""
        return cls.build_frame_processor(
            tuple(config.frame_size) if config.frame_size else None,
            int(config.vlm_config.vision_config.patch_size),
            min_pixels=config.min_pixels,
            max_pixels=config.max_pixels,
        )

    @staticmethod
    def load_frame_processor(
        path: str | Path,
        frame_size: tuple[int, int] | None,
        *,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
    ) -> Qwen2VLImageProcessorPil:
        """The checkpoint's processor (mean/std, patch and merge sizes, its own pixel bounds); explicit
        ``min_pixels`` / ``max_pixels`` replace its bounds, else a ``frame_size`` fixes the area."""
        proc = Qwen2VLImageProcessorPil.from_pretrained(str(path), local_files_only=True)
        if min_pixels is not None or max_pixels is not None:
            size = dict(proc.size or {})
            if min_pixels is not None:
                size["shortest_edge"] = int(min_pixels)
            if max_pixels is not None:
                size["longest_edge"] = int(max_pixels)
            proc.size = size
        elif frame_size is not None:
            pixels = int(frame_size[0]) * int(frame_size[1])
            proc.size = {"shortest_edge": pixels, "longest_edge": pixels}
        return proc

    @classmethod
    def load_frame_processor_for(cls, path: str | Path, config: Any) -> Qwen2VLImageProcessorPil:
        return cls.load_frame_processor(
            path,
            tuple(config.frame_size) if config.frame_size else None,
            min_pixels=config.min_pixels,
            max_pixels=config.max_pixels,
        )

    def preprocess_frames(self, processor: Any, frames: np.ndarray) -> dict[str, torch.Tensor]:
        out = processor(images=list(frames), return_tensors="pt")
        return {"pixel_values": out["pixel_values"], "image_grid_thw": out["image_grid_thw"]}

    #: frames are separate images: their patches and grid rows concatenate (the tower attends within each)
    frame_dims: ClassVar[dict[str, int]] = {"pixel_values": 0, "image_grid_thw": 0}

    def count_frames(self, pixel_inputs: dict[str, torch.Tensor]) -> int:
        return int(pixel_inputs["image_grid_thw"].shape[0])

    def frames_joinable(self, pixel_inputs: list[dict[str, torch.Tensor]]) -> bool:
        """Joinable when every frame of every video has the same grid (``frame_features`` stacks them)."""
        if not super().frames_joinable(pixel_inputs):
            return False
        grids = torch.cat([p["image_grid_thw"] for p in pixel_inputs])
        return bool((grids == grids[:1]).all())

    def frame_features(self, pixel_inputs: dict[str, torch.Tensor]) -> FrameFeatures:
        """Merged tokens only: the merger projects 2x2 patches together, nothing finer is in the LLM width."""
        grid = pixel_inputs["image_grid_thw"].to(self.vlm.device)
        pixels = pixel_inputs["pixel_values"].to(self.vlm.device)
        feats = self.vlm.model.get_image_features(pixels, grid).pooler_output
        tokens = torch.stack(list(feats), dim=0)  # every frame has the same grid -> [T, P, D]
        merge = int(self.vlm.config.vision_config.spatial_merge_size)
        _, h, w = (int(v) for v in pixel_inputs["image_grid_thw"][0])
        grid_hw = (h // merge, w // merge)
        return FrameFeatures(tokens=tokens, grid_hw=grid_hw, patches=tokens, patch_grid_hw=grid_hw)

    def prefix_position_ids(
        self, kinds: torch.Tensor, pixel_inputs: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, int]:
        kinds = kinds.reshape(1, -1)
        token_types = (kinds == VISUAL).to(torch.int32)
        position_ids, _ = self.vlm.model.get_rope_index(
            input_ids=torch.zeros_like(kinds, dtype=torch.long),
            mm_token_type_ids=token_types,
            image_grid_thw=pixel_inputs["image_grid_thw"].to(kinds.device),
        )
        return position_ids, int(position_ids.max()) + 1
