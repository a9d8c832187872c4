"""Qwen2.5-VL (``Qwen2_5_VLForConditionalGeneration``, transformers-native).

* Chat: ChatML with the default system turn; an image is ``<|vision_start|><|image_pad|><|vision_end|>``.
* Frames: separate images, each after "Frame k at t s:" (a video input would merge frame pairs
  through ``temporal_patch_size=2`` and give one time per pair).
* Coordinates: absolute pixels of the model's smart-resized input (Qwen2.5-VL README, "Coordinate
  System"; quoted in QwenLM/Qwen3-VL issue #1741: "changed from the absolute coordinates used in
  Qwen2.5-VL to relative coordinates ranging from 0 to 1000"); parsed with ``processed_size`` =
  image grid x patch size, then rescaled to the original frame.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stvg_plugin.models.families import FamilySpec, register_family
from stvg_plugin.models.families._tiny import QWEN_SYSTEM, byte_tokenizer, chatml_template, save_tiny, vocab_size
from stvg_plugin.prompts import FRAME_LABEL, PromptStyle

QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                 "<|image_pad|>", "<|video_pad|>", "<|box_start|>", "<|box_end|>", "<|object_ref_start|>",
                 "<|object_ref_end|>"]
VISION_START, VISION_END = "<|vision_start|>", "<|vision_end|>"  # around an image (also the model core's frames)
QWEN_IMAGE = VISION_START + "<|image_pad|>" + VISION_END
QWEN_VIDEO = VISION_START + "<|video_pad|>" + VISION_END
QWEN_HEADER = QWEN_SYSTEM + "<|im_start|>user\n"
QWEN_FOOTER = "<|im_end|>\n<|im_start|>assistant\n"

STYLE = PromptStyle(
    family="qwen2_5_vl",
    header=QWEN_HEADER,
    frame_line=FRAME_LABEL + QWEN_IMAGE + "\n",
    footer=QWEN_FOOTER,
    coords="x1, y1 is the top-left and x2, y2 the bottom-right corner, in pixels of the frame as you see it.",
    box_scale="pixels",
)

# Defaults of lmms-eval's stock ``qwen2_5_vl`` model (min_pixels=256*28*28, max_pixels=1605632).
STOCK_MIN_PIXELS = 256 * 28 * 28
STOCK_MAX_PIXELS = 1605632
# Defaults of the released checkpoints' image processor (preprocessor_config.json), what a server
# such as vLLM applies unless told otherwise.
PROCESSOR_MIN_PIXELS = 56 * 56
PROCESSOR_MAX_PIXELS = 28 * 28 * 16384


def grid_size(inputs: dict, image_processor: Any) -> tuple[int, int]:
    """(height, width) the model saw: the first image's grid times the patch size."""
    grid = inputs["image_grid_thw"]
    patch = int(getattr(image_processor, "patch_size", 14))
    return int(grid[0, 1]) * patch, int(grid[0, 2]) * patch


def answer_frame_size(height: int, width: int, max_pixels: int | None = None, min_pixels: int | None = None,
                      factor: int = 28) -> tuple[int, int]:
    """The smart-resized (height, width) whose pixels Qwen2.5-VL answers in (transformers' own rule)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    return smart_resize(int(height), int(width), factor=factor,
                        min_pixels=int(min_pixels or STOCK_MIN_PIXELS), max_pixels=int(max_pixels or STOCK_MAX_PIXELS))


def pixel_budget(max_pixels: int) -> dict:
    """Image-processor ``size`` for a ``max_pixels`` budget (Qwen image processors: shortest/longest edge in pixels)."""
    return {"size": {"shortest_edge": min(56 * 56, int(max_pixels)), "longest_edge": int(max_pixels)}}


def build_tiny(folder: str | Path, seed: int = 0) -> Path:
    """A tiny random Qwen2.5-VL checkpoint (config, safetensors, tokenizer, image processor); no hub."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2VLImageProcessorPil

    tok = byte_tokenizer(QWEN_SPECIALS, chat_template=chatml_template(QWEN_IMAGE, QWEN_SYSTEM, QWEN_VIDEO))
    ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}
    image_processor = Qwen2VLImageProcessorPil(size={"shortest_edge": 28 * 28, "longest_edge": 56 * 56})
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": vocab_size(tok), "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 4096,
            # a wide init keeps greedy choices well separated, so cached and full passes agree
            "initializer_range": 0.2,
            "rope_parameters": {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0},
            "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 1, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 64,
            "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 56,
            "fullatt_block_indexes": [0], "tokens_per_second": 2,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    return save_tiny(folder, model, tok, image_processor)


FAMILY = register_family(FamilySpec(
    name="qwen2_5_vl",
    model_types=("qwen2_5_vl",),
    model_class="Qwen2_5_VLForConditionalGeneration",
    processor_class="Qwen2_5_VLProcessor",
    style=STYLE,
    box_scale="pixels",
    coords_source="Qwen2.5-VL README 'Coordinate System' (absolute coordinates of the resized input), "
                  "quoted in QwenLM/Qwen3-VL#1741",
    frames="separate images, each after 'Frame k at t s:'",
    build_tiny=build_tiny,
    prefix_state=("rope_deltas",),
    pixel_budget=pixel_budget,
    processed_size=grid_size,
    answer_frame_size=answer_frame_size,
))
