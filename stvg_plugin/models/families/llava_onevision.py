"""LLaVA-OneVision and LLaVA-Video (``LlavaOnevisionForConditionalGeneration``, transformers-native ``-hf``).

* Chat: ChatML (Qwen2 language model); an image is ``<image>``, expanded by the processor to the
  anyres feature count (base + crops + newline tokens).
* Frames: separate images after "Frame k at t s:" (LLaVA-Video's own prompt states "The video lasts
  for T seconds, and N frames are uniformly sampled from it. These frames are located at t1s, ...").
  Cost and fidelity caveat: as images, frames go through the anyres path (base 729 tokens plus crops
  per frame at 384 px SigLIP), not the video path the models were tuned with (one 384x384 view pooled
  2x2 to 196 tokens), which needs transformers' video processor and so torchvision. Keep
  ``num_frames`` small with real checkpoints until the video path is available.
* Coordinates: relative 0-1 ("[x1, y1, x2, y2]" as fractions of width and height, the LLaVA-1.5
  convention its grounding data inherits: haotian-liu/LLaVA#606; LLaVA-OneVision's own card does not
  state a convention, see EvolvingLMMs-Lab/LLaVA-OneVision-2#39, so treat this one as least certain).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stvg_plugin.models.families import FamilySpec, register_family
from stvg_plugin.models.families._tiny import byte_tokenizer, chatml_template, qwen2_text_config, save_tiny
from stvg_plugin.prompts import FRAME_LABEL, RELATIVE, PromptStyle

IMAGE = "<image>"
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", IMAGE, "<video>"]
_PINPOINTS = [[32, 32], [32, 64], [64, 32]]

STYLE = PromptStyle(
    family="llava_onevision",
    header="<|im_start|>user\n",
    frame_line=FRAME_LABEL + IMAGE + "\n",
    footer="<|im_end|>\n<|im_start|>assistant\n",
    coords=RELATIVE,
    box_scale="relative",
)


def processor_kwargs(config: Any) -> dict:
    vision = config.vision_config
    return {"num_image_tokens": (int(vision.image_size) // int(vision.patch_size)) ** 2,
            "vision_feature_select_strategy": config.vision_feature_select_strategy}


def build_tiny(folder: str | Path, seed: int = 0) -> Path:
    """A tiny random LLaVA-OneVision checkpoint (SigLIP + Qwen2; safetensors, tokenizer, image processor)."""
    import torch
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessorPil,
    )

    tok = byte_tokenizer(SPECIALS, {"image_token": IMAGE, "video_token": "<video>"},
                         chat_template=chatml_template(IMAGE))
    image_processor = LlavaOnevisionImageProcessorPil(size={"height": 32, "width": 32}, image_grid_pinpoints=_PINPOINTS)
    config = LlavaOnevisionConfig(
        vision_config={"model_type": "siglip_vision_model", "hidden_size": 32, "num_hidden_layers": 1,
                       "num_attention_heads": 2, "intermediate_size": 64, "image_size": 32, "patch_size": 8},
        text_config=qwen2_text_config(tok),
        image_token_index=tok.convert_tokens_to_ids(IMAGE),
        video_token_index=tok.convert_tokens_to_ids("<video>"),
        image_grid_pinpoints=_PINPOINTS,
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
    )
    torch.manual_seed(seed)
    model = LlavaOnevisionForConditionalGeneration(config).eval()
    return save_tiny(folder, model, tok, image_processor)


FAMILY = register_family(FamilySpec(
    name="llava_onevision",
    model_types=("llava_onevision",),
    model_class="LlavaOnevisionForConditionalGeneration",
    processor_class="LlavaOnevisionProcessor",
    style=STYLE,
    box_scale="relative",
    coords_source="LLaVA-1.5 grounding data convention (haotian-liu/LLaVA#606); not stated on the OneVision card",
    frames="separate images, each after 'Frame k at t s:'",
    build_tiny=build_tiny,
    processor_kwargs=processor_kwargs,
))
