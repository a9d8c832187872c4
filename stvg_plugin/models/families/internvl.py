"""InternVL 3 / 3.5, transformers-native (``InternVLForConditionalGeneration``, the ``-hf`` checkpoints).

* Chat: ChatML; an image is ``<IMG_CONTEXT>`` in the text, which the processor expands to
  ``<img>`` + ``image_seq_length`` x tiles context tokens + ``</img>``.
* Frames: separate images after "Frame k at t s:" (InternVL's own video prompt is "Frame{i}: <image>"
  with one tile per frame; the time is added in text here).
* Coordinates: relative, 0-1000 ("[[x1, y1, x2, y2]]" normalised to [0, 1000]: InternVL docs, "Chat
  Data Format", grounding/detection data, internvl.readthedocs.io/en/latest/get_started/chat_data_format.html;
  om-ai-lab/VLM-R1#11: "LLaVA, InternVL output bbox in a normalized form ... max value 1000").
  Only the native ``internvl`` model type is accepted: the remote-code ``internvl_chat`` checkpoints
  need ``trust_remote_code``, which this backend never turns on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stvg_plugin.models.families import FamilySpec, register_family
from stvg_plugin.models.families._tiny import byte_tokenizer, chatml_template, qwen2_text_config, save_tiny
from stvg_plugin.prompts import FRAME_LABEL, PERMILLE, PromptStyle

IMAGE = "<IMG_CONTEXT>"
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", IMAGE, "<video>"]
NAMED = {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": IMAGE,
         "video_token": "<video>"}

STYLE = PromptStyle(
    family="internvl",
    header="<|im_start|>user\n",
    frame_line=FRAME_LABEL + IMAGE + "\n",
    footer="<|im_end|>\n<|im_start|>assistant\n",
    coords=PERMILLE,
    box_scale="permille",
)


def processor_kwargs(config: Any) -> dict:
    return {"image_seq_length": int(config.image_seq_length)}


def build_tiny(folder: str | Path, seed: int = 0) -> Path:
    """A tiny random InternVL checkpoint (InternViT + Qwen2; safetensors, tokenizer, image processor)."""
    import torch
    from transformers import GotOcr2ImageProcessorPil, InternVLConfig, InternVLForConditionalGeneration

    tok = byte_tokenizer(SPECIALS, NAMED, chat_template=chatml_template(IMAGE))
    # tiling on, as in the released preprocessor_config.json: the backend must turn it off for frames
    image_processor = GotOcr2ImageProcessorPil(size={"height": 32, "width": 32}, crop_to_patches=True, max_patches=4)
    config = InternVLConfig(
        vision_config={"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
                       "image_size": [32, 32], "patch_size": [8, 8]},
        text_config=qwen2_text_config(tok),
        image_token_id=tok.convert_tokens_to_ids(IMAGE),
        image_seq_length=4,
        downsample_ratio=0.5,
    )
    torch.manual_seed(seed)
    model = InternVLForConditionalGeneration(config).eval()
    return save_tiny(folder, model, tok, image_processor)


FAMILY = register_family(FamilySpec(
    name="internvl",
    model_types=("internvl",),
    model_class="InternVLForConditionalGeneration",
    processor_class="InternVLProcessor",
    style=STYLE,
    box_scale="permille",
    coords_source="InternVL docs 'Chat Data Format' (grounding boxes normalised to 0-1000)",
    frames="separate images, each after 'Frame k at t s:'",
    build_tiny=build_tiny,
    processor_kwargs=processor_kwargs,
    # InternVL's own video path gives each frame one 448x448 tile; dynamic tiling (up to 12 tiles + a
    # thumbnail per image) would multiply the frame's tokens by up to 13
    frame_kwargs={"crop_to_patches": False},
))
