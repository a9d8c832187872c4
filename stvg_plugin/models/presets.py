"""Named model configurations and the builders that turn them into models.

* ``spacevllm_tiny`` / ``spacevllm_qwen2_5_vl_tiny``: random-initialised backbones built from config
  alone, seeded, with a tokenizer built in code (``tokenizer: chars`` by default, or ``words``:
  common English words whole, other words as characters): work with nothing downloaded.
  ``spacevllm_tiny_learn``: the tiny one as tuned for learning on CPU (examples/learnability.py).
* ``spacevllm_llava_video_7b`` (LLaVA-Video-7B-Qwen2 dims) / ``spacevllm_qwen2_5_vl_7b``: need
  ``backbone_path`` (a local transformers checkpoint of the base VLM) or a saved checkpoint; they also
  build on the meta device (:func:`build_meta_model`) to check shapes and count FLOPs without weights.

Each preset is also ``conf/model/<name>.yaml`` (``stvg ... model=<name>``; a test keeps the two
lists equal). The earlier names (``spacevllm_7b``, ``spacevllm_qwen25vl_7b``,
``spacevllm_qwen25vl_tiny``) still resolve (:data:`PRESET_ALIASES`).

A model spec is a preset name or a dict ``{"preset": name, **overrides}`` (``name`` also accepted).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from transformers import AutoConfig, AutoTokenizer

from stvg_plugin.models.backbones import get_backbone
from stvg_plugin.models.checkpoint import check_remote_code
from stvg_plugin.models.configuration_spacevllm import SpaceVLLMConfig
from stvg_plugin.models.modeling_spacevllm import SpaceVLLMForGrounding
from stvg_plugin.models.processing_spacevllm import SpaceVLLMProcessor, special_token_ids
from stvg_plugin.models.tokenizer import build_tiny_tokenizer
from stvg_plugin.prompts import CORE_FRAME_TEMPLATE_COMPACT, CORE_PROMPT_PREFIX_7B, core_frame_templates

_QWEN_FRAME = core_frame_templates("qwen2_5_vl")
_TINY = {
    "size": "tiny",
    "num_frames": 8,
    "max_frames": 16,
    "frame_size": [32, 32],
    "decoder_dim": 32,
    "decoder_heads": 2,
    "decoder_layers": 1,
    "decoder_mlp_ratio": 2,
    "max_new_tokens": 24,
    "max_new_tokens_text_boxes": 400,
    "seed": 0,
}
_LARGE = {
    "size": "7b",
    "num_frames": 64,
    "max_frames": 64,
    "decoder_dim": 256,
    "decoder_heads": 8,
    "decoder_layers": 2,
    "decoder_mlp_ratio": 2,
    "max_new_tokens": 32,
    "prompt_prefix": CORE_PROMPT_PREFIX_7B,
    "dtype": "bfloat16",
    # training memory plan for one 141 GB GPU (BENCHMARKS.md "Memory plan"): recompute each LLM /
    # vision layer in the backward instead of keeping its activations, a frozen vision tower, and no
    # in-RAM frame cache (the trainer streams frames)
    "gradient_checkpointing": True,
    "train_parts": ["queries", "decoder", "projector", "llm"],
    "cache_frames": False,
}

# the earlier preset names, kept working for scripts and saved commands
PRESET_ALIASES = {
    "spacevllm_7b": "spacevllm_llava_video_7b",
    "spacevllm_qwen25vl_7b": "spacevllm_qwen2_5_vl_7b",
    "spacevllm_qwen25vl_tiny": "spacevllm_qwen2_5_vl_tiny",
}


class _Presets(dict):
    """The preset table: lists its own names only, and also answers to :data:`PRESET_ALIASES`."""

    def __contains__(self, name: object) -> bool:
        return super().__contains__(PRESET_ALIASES.get(name, name) if isinstance(name, str) else name)

    def __getitem__(self, name: str) -> dict[str, Any]:
        return super().__getitem__(PRESET_ALIASES.get(name, name))

    def get(self, name: str, default: Any = None) -> Any:
        return super().get(PRESET_ALIASES.get(name, name), default)


PRESETS: dict[str, dict[str, Any]] = _Presets({
    "spacevllm_tiny": {"backbone": "llava_onevision", **_TINY},
    # examples/learnability.py, `make demo`: 16 frames of 64x64 px, span from the relevance head; the
    # space decoder reads the projector output on the 8x8 patch grid before LLaVA-OneVision's 2x2
    # pooling, adds direction-of-motion channels, mixes each token with its space-time neighbours,
    # scores tokens against the query text and places the box with the reference-point head (train it
    # with trainer.loss_weights.centre > 0); a short frame header keeps the sequence at ~410 tokens; the
    # relevance head learns how much of each sampled frame's stretch the span covers (sub-frame span ends)
    "spacevllm_tiny_learn": {
        "backbone": "llava_onevision", **_TINY, "num_frames": 16, "max_frames": 16, "frame_size": [64, 64],
        "span_source": "relevance", "box_head": "decoder", "decoder_dim": 64, "decoder_heads": 2,
        "decoder_layers": 1, "decoder_box_head": "reference", "decoder_visual_source": "patches",
        "decoder_temporal": True, "decoder_text_match": True, "decoder_motion": True,
        "frame_template": CORE_FRAME_TEMPLATE_COMPACT, "frame_suffix": "", "relevance_target": "coverage",
    },
    "spacevllm_qwen2_5_vl_tiny": {"backbone": "qwen2_5_vl", **_TINY, **_QWEN_FRAME},
    # LLaVA-Video-7B-Qwen2 was trained with 2x2 average pooling + a newline per row (lmms-lab's
    # mm_spatial_pool_mode=average, mm_newline_position=grid): 182 tokens per frame, kept here;
    # bilinear + none is transformers' LLaVA-OneVision layout (196 tokens), for OneVision weights
    "spacevllm_llava_video_7b": {"backbone": "llava_onevision", **_LARGE, "frame_size": [384, 384],
                                 "video_pool_mode": "average", "video_newline": "row"},
    "spacevllm_qwen2_5_vl_7b": {
        "backbone": "qwen2_5_vl",
        **_LARGE,
        **_QWEN_FRAME,
        "num_frames": 32,
        # Qwen's aspect-preserving smart resize of the native frames (frame_size None): at least Qwen's
        # own video minimum (128 * 28^2 px), at most 336^2 px = 144 tokens per frame (4 608 at 32 frames)
        "frame_size": None,
        "min_pixels": 128 * 28 * 28,
        "max_pixels": 336 * 336,
    },
})

# keys of a spec that are about building/loading, not SpaceVLLMConfig fields
_BUILD_KEYS = (
    "preset", "name", "size", "backbone_path", "dtype", "allow_pickle", "video_backend", "type", "tokenizer",
    "trust_remote_code",  # the caller's decision for this load only; never saved into a checkpoint's config
    "gradient_checkpointing", "train_parts", "cache_frames", "num_layers",
)
# config fields a caller may change on an already trained checkpoint
RUNTIME_KEYS = ("num_frames", "span_source", "relevance_threshold", "max_new_tokens", "max_new_tokens_text_boxes")


def resolve_spec(model_cfg: Mapping[str, Any] | str) -> dict[str, Any]:
    """Preset name or dict -> a full spec dict (preset values overridden by the dict's own keys)."""
    if isinstance(model_cfg, str):
        model_cfg = {"preset": model_cfg}
    if not isinstance(model_cfg, Mapping):
        raise TypeError(f"model config must be a preset name or a dict, got {type(model_cfg).__name__}")
    spec = dict(model_cfg)
    name = spec.get("preset") or spec.get("name")
    if name is not None:
        if name not in PRESETS:
            raise ValueError(f"unknown model preset {name!r}; known: {sorted(PRESETS)}")
        spec = {**copy.deepcopy(PRESETS[name]), **spec}
    spec.setdefault("backbone", "llava_onevision")
    return spec


def _config_fields(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k not in _BUILD_KEYS}


def reduce_depth(vlm_config: Any, num_layers: int) -> Any:
    """Keep the first ``num_layers`` LLM layers and vision-tower layers of a VLM config (in place).

    Real widths, heads and patch sizes stay: profiles and equivalence tests at real width run on a
    CPU or a small GPU this way (``bench/gpu_profile.py --num-layers``). Qwen2.5-VL's full-attention
    vision blocks are kept where they fall inside the new depth (the last block otherwise).
    """
    n = int(num_layers)
    text = vlm_config.get_text_config()
    text.num_hidden_layers = n
    if getattr(text, "layer_types", None):
        text.layer_types = list(text.layer_types)[:n]
    vision = vlm_config.vision_config
    if hasattr(vision, "depth"):  # Qwen2.5-VL
        vision.depth = n
        full = [i for i in (vision.fullatt_block_indexes or []) if i < n]
        vision.fullatt_block_indexes = full or [n - 1]
    else:  # SigLIP
        vision.num_hidden_layers = n
    return vlm_config


def use_tokenizer_vocab(vlm_config: Any, tokenizer: Any) -> Any:
    """Cut a real-size VLM config's vocabulary to ``tokenizer`` (+ the ``<st_query>`` placeholder) and
    point its special token ids at the tokenizer's (in place).

    For real-width tests and measurements without a real tokenizer: the embedding table and lm_head
    are lookups, so their length changes no computed value per token, and it saves ~2 GB (bf16) per model.
    """
    ids = special_token_ids(tokenizer)
    text = vlm_config.get_text_config()
    text.vocab_size = len(tokenizer) + 1
    text.eos_token_id, text.pad_token_id, text.bos_token_id = ids["eos"], ids["pad"], None
    if hasattr(vlm_config, "vision_start_token_id"):  # Qwen2.5-VL
        vlm_config.image_token_id, vlm_config.video_token_id = ids["image_pad"], ids["video"]
        vlm_config.vision_start_token_id, vlm_config.vision_end_token_id = ids["vision_start"], ids["vision_end"]
    else:
        vlm_config.image_token_index, vlm_config.video_token_index = ids["image"], ids["video"]
    return vlm_config


def build_config(
    spec: Mapping[str, Any], vocab_size: int | None = None, special_ids: dict | None = None
) -> SpaceVLLMConfig:
    adapter = get_backbone(spec["backbone"])
    if spec.get("backbone_path"):
        check_remote_code(spec["backbone_path"], trust_remote_code=bool(spec.get("trust_remote_code")))
        vlm_config = AutoConfig.from_pretrained(
            str(spec["backbone_path"]), local_files_only=True, trust_remote_code=bool(spec.get("trust_remote_code"))
        )
    elif spec.get("size") == "tiny":
        vlm_config = adapter.tiny_config(vocab_size, special_ids)
        vision = getattr(vlm_config, "vision_config", None)
        if spec.get("frame_size") and hasattr(vision, "image_size"):  # SigLIP's fixed grid follows the frames
            vision.image_size = int(spec["frame_size"][0])
    else:
        vlm_config = adapter.large_config()
    if spec.get("num_layers"):
        reduce_depth(vlm_config, int(spec["num_layers"]))
    return SpaceVLLMConfig(vlm_config=vlm_config, **_config_fields(spec))


def build_tiny_model(model_cfg: Mapping[str, Any] | str = "spacevllm_tiny") -> SpaceVLLMForGrounding:
    """A seeded random tiny model with its processor; identical for identical specs."""
    spec = resolve_spec(model_cfg)
    tokenizer = build_tiny_tokenizer(spec.get("tokenizer", "chars"))
    config = build_config(spec, len(tokenizer), special_token_ids(tokenizer))
    adapter = get_backbone(spec["backbone"])
    processor = SpaceVLLMProcessor(tokenizer, adapter.frame_processor_for(config), config)
    return SpaceVLLMForGrounding.from_config_seeded(config, processor)


def build_from_backbone(model_cfg: Mapping[str, Any] | str) -> SpaceVLLMForGrounding:
    """Pretrained base VLM from ``backbone_path`` + freshly initialised (seeded) queries and decoder."""
    spec = resolve_spec(model_cfg)
    path = str(spec["backbone_path"])
    adapter_cls = get_backbone(spec["backbone"])
    dtype = getattr(torch, spec.get("dtype") or "float32")
    trust_remote_code = bool(spec.get("trust_remote_code"))
    check_remote_code(path, trust_remote_code=trust_remote_code)
    backbone = adapter_cls.from_pretrained(path, trust_remote_code=trust_remote_code, dtype=dtype)
    config = SpaceVLLMConfig(vlm_config=backbone.vlm.config, **_config_fields(spec))
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=trust_remote_code)
    processor = SpaceVLLMProcessor(tokenizer, adapter_cls.load_frame_processor_for(path, config), config)
    if len(tokenizer) > backbone.vlm.get_input_embeddings().num_embeddings:
        backbone.vlm.resize_token_embeddings(len(tokenizer))  # the added <st_query> placeholder id
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(config.seed))
        model = SpaceVLLMForGrounding(config, backbone=backbone)
    model.processor = processor
    return model.cast_for_compute(dtype).eval()


def build_meta_model(model_cfg: Mapping[str, Any] | str = "spacevllm_llava_video_7b") -> SpaceVLLMForGrounding:
    """The full-size model on ``torch.device("meta")``: shapes only, no memory, no weights."""
    spec = resolve_spec(model_cfg)
    spec.pop("backbone_path", None)
    if spec.get("size") == "tiny":
        tok = build_tiny_tokenizer(spec.get("tokenizer", "chars"))
        config = build_config(spec, len(tok), special_token_ids(tok))
    else:
        config = build_config(spec)
    with torch.device("meta"):
        return SpaceVLLMForGrounding(config)
