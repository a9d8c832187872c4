"""Qwen3-VL (``Qwen3VLForConditionalGeneration``, transformers-native).

* Chat: ChatML without a default system turn; an image is ``<|vision_start|><|image_pad|><|vision_end|>``.
* Frames: separate images after "Frame k at t s:" (its video path writes "<t seconds>" stamps through
  the video processor, which needs torchvision; images keep one time per frame the same way).
* Coordinates: relative, 0-1000 on both axes (Qwen3-VL README: "Qwen3-VL's default coordinate system
  has been changed from the absolute coordinates used in Qwen2.5-VL to relative coordinates ranging
  from 0 to 1000", quoted in QwenLM/Qwen3-VL#1741; also #1486, #2020).
"""

from __future__ import annotations

from pathlib import Path

from stvg_plugin.models.families import FamilySpec, register_family
from stvg_plugin.models.families._tiny import byte_tokenizer, chatml_template, save_tiny, vocab_size
from stvg_plugin.models.families.qwen2_5_vl import QWEN_FOOTER, QWEN_IMAGE, QWEN_SPECIALS, QWEN_VIDEO, pixel_budget
from stvg_plugin.prompts import FRAME_LABEL, PERMILLE, PromptStyle

STYLE = PromptStyle(
    family="qwen3_vl",
    header="<|im_start|>user\n",
    frame_line=FRAME_LABEL + QWEN_IMAGE + "\n",
    footer=QWEN_FOOTER,
    coords=PERMILLE,
    box_scale="permille",
)


def build_tiny(folder: str | Path, seed: int = 0) -> Path:
    """A tiny random Qwen3-VL checkpoint (config, safetensors, tokenizer, image processor); no hub."""
    import torch
    from transformers import Qwen2VLImageProcessorPil, Qwen3VLConfig, Qwen3VLForConditionalGeneration

    tok = byte_tokenizer(QWEN_SPECIALS, chat_template=chatml_template(QWEN_IMAGE, video_placeholder=QWEN_VIDEO))
    ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}
    image_processor = Qwen2VLImageProcessorPil(size={"shortest_edge": 32 * 32, "longest_edge": 64 * 64}, patch_size=16)
    config = Qwen3VLConfig(
        text_config={
            "vocab_size": vocab_size(tok), "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "max_position_embeddings": 4096,
            "initializer_range": 0.2,
            "rope_parameters": {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0,
                                "mrope_interleaved": True},
            "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 64,
            "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2, "num_position_embeddings": 64,
            "deepstack_visual_indexes": [1],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(config).eval()
    return save_tiny(folder, model, tok, image_processor)


FAMILY = register_family(FamilySpec(
    name="qwen3_vl",
    model_types=("qwen3_vl",),
    model_class="Qwen3VLForConditionalGeneration",
    processor_class="Qwen3VLProcessor",
    style=STYLE,
    box_scale="permille",
    coords_source="Qwen3-VL README 'Coordinate System' (relative 0-1000), quoted in QwenLM/Qwen3-VL#1741",
    frames="separate images, each after 'Frame k at t s:'",
    build_tiny=build_tiny,
    prefix_state=("rope_deltas",),
    pixel_budget=pixel_budget,
))
