"""Configuration of the SpaceVLLM-style grounding model (HF configuration-file style).

One config holds everything a checkpoint needs to be rebuilt: the wrapped video-LLM's own
transformers config (``vlm_config``, resolved by its ``model_type``), which backbone adapter drives it,
the spatio-temporal query table size, the space-decoder dimensions, the prompt templates (kept in
config, never in code, because the notes stress that prompts change results) and the decoding
switches. ``save_pretrained`` writes it as ``config.json`` next to the safetensors weights.
"""

from __future__ import annotations

from typing import Any, ClassVar

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from stvg_plugin.models.losses import DEFAULT_LOSS_WEIGHTS
from stvg_plugin.models.space_decoder import DECODER_BOX_HEADS
from stvg_plugin.prompts import (
    CORE_BOX_TEXT_TEMPLATE,
    CORE_FRAME_SUFFIX,
    CORE_FRAME_TEMPLATE,
    CORE_INSTRUCTION_TEMPLATE,
    CORE_PROMPT_PREFIX,
)

SPAN_SOURCES = ("text", "relevance", "combined")
RELEVANCE_TARGETS = ("in_span", "coverage")
BOX_HEADS = ("decoder", "text")
DECODER_VISUAL_SOURCES = ("hidden", "projected", "patches")
DECODER_TEXT_SOURCES = ("hidden", "hidden+embedding")


class SpaceVLLMConfig(PreTrainedConfig):
    """Fields (all have working defaults; presets in :mod:`stvg_plugin.models.presets`).

    * ``backbone``: registry key of the adapter (``llava_onevision`` | ``qwen2_5_vl``).
    * ``vlm_config``: the transformers config of the wrapped VLM (dict or config object).
    * ``num_frames``: frames sampled per video; ``max_frames``: rows of ``st_query_embed`` (N_max).
    * ``frame_size``: ``(height, width)`` frames are resized to while decoding the video (``None``:
      native size, e.g. for Qwen2.5-VL's own aspect-preserving resize).
    * ``min_pixels`` / ``max_pixels`` (Qwen2.5-VL): bounds of the smart resize per frame; ``None`` =
      the checkpoint's preprocessor config (or ``frame_size``'s area when that is set).
    * ``video_pool_mode`` / ``video_newline`` (LLaVA-Video / LLaVA-OneVision): how a frame's
      ``g x g`` projected patches become LLM tokens. ``bilinear`` + ``none`` = transformers'
      LLaVA-OneVision (bilinear to ``ceil(g/2)^2``: 196 tokens at 384 px); ``average`` + ``row`` =
      the lmms-lab LLaVA-Video training layout (2x2 average pooling to ``floor(g/2)^2`` = 13x13 plus
      ``image_newline`` after every row: 182 tokens). ``None`` = the checkpoint config's
      (``mm_spatial_pool_mode`` / ``mm_newline_position: grid``), else ``bilinear`` / ``none``.
    * ``decoder_dim`` / ``decoder_heads`` / ``decoder_layers`` / ``decoder_mlp_ratio``: space decoder.
    * ``decoder_visual_source``: ``hidden`` (LLM last-layer states at the visual positions),
      ``projected`` (the projector output fed to the LLM) or ``patches`` (the projector output on the
      backbone's finest grid, before pooling: 4x the tokens on LLaVA-OneVision, so the box head
      localises on an 8x8 instead of a 4x4 grid at 64 px; equal to ``projected`` on Qwen2.5-VL).
    * Two different "box head" switches (names kept: they are checkpoint config keys):
      ``box_head`` says *where the boxes come from*: ``decoder`` (the space decoder regresses them) or
      ``text`` (ablation: the LLM writes one box per frame in its answer). ``decoder_box_head`` says
      *how the space decoder regresses* them (used when ``box_head="decoder"``; the module is
      ``space_decoder.box_head``): ``reference`` (2-D position code on the visual tokens + soft-argmax box
      centre over the frame's token grid; learns from scratch) or ``mlp`` (MLP on the query state only,
      the first design; its boxes stayed at the mean box on CPU from scratch).
    * ``decoder_text_match``: add a text-conditioned linear score per visual token (and its frame
      maximum to the relevance logit); off in checkpoints saved before it existed.
    * ``decoder_text_source``: ``hidden`` (the LLM's last-layer states at the referring-text tokens) or
      ``hidden+embedding`` (plus, through the decoder's own norm and projection, those tokens' input
      embeddings: the words themselves, whatever the video). A from-scratch LLM's text states mix in
      the video they attend to, and a colour word moved them less than another video did
      (examples/learnability.md, session 5); off in checkpoints saved before it existed.
    * ``decoder_temporal``: a depthwise space-time convolution over the frames' token grids in the
      decoder (reference head), so motion ("moving left") is visible per token; off by default.
    * ``decoder_motion``: direction-of-motion channels per token in the decoder (reference head; products
      of temporal and spatial differences, :class:`~stvg_plugin.models.space_decoder.MotionFeatures`);
      off by default and in checkpoints saved before it existed.
    * ``decoder_pixel_stem``: features read from the frames' pixels by two strided convolutions, added on
      the token grid to what the decoder sees (:class:`~stvg_plugin.models.space_decoder.PixelStem`: a
      small object's shape inside a patch); needs ``decoder_visual_source="patches"`` and a backbone that
      hands over its frames as pixels (LLaVA-OneVision); off by default and in older checkpoints.
    * ``span_source``: ``text`` | ``relevance`` | ``combined``; ``box_head``: ``decoder`` | ``text`` (above).
    * ``relevance_target``: what the relevance head learns per sampled frame: ``in_span`` (its frame is
      inside the GT span, 0 or 1) or ``coverage`` (the fraction of the seconds it stands for that the
      span covers; the relevance span's ends are then placed inside those seconds,
      :func:`~stvg_plugin.models.decoding.relevance_span`). Older checkpoints: ``in_span``.
    * templates: ``prompt_prefix``, ``frame_template`` (``{index}`` from 0, ``{time}``), ``frame_suffix``,
      ``instruction_template`` (must contain ``{query}``), ``box_text_template``; defaults and the frame
      numbering convention in :mod:`stvg_plugin.prompts` (``CORE_*``).
    * loss weights of a plain ``model(inputs)`` call (the trainer passes its own ``trainer.loss_weights``;
      both default to :data:`~stvg_plugin.models.losses.DEFAULT_LOSS_WEIGHTS`): ``loss_l1_weight`` (5),
      ``loss_giou_weight`` (2) (DETR defaults, assumed in the notes), ``loss_relevance_weight``,
      ``loss_lm_weight``, ``loss_centre_weight`` (0 = off: cross-entropy of the reference head's
      per-token scores towards the GT centre, split bilinearly over its nearest token cells).
    """

    model_type: ClassVar[str] = "spacevllm"
    sub_configs_defaults: ClassVar[dict[str, SubConfigSpec]] = {
        "vlm_config": SubConfigSpec(config_class=AutoConfig, model_type="llava_onevision"),
    }

    backbone: str = "llava_onevision"
    vlm_config: dict | PreTrainedConfig | None = None
    num_frames: int = 8
    max_frames: int = 64
    frame_size: list[int] | tuple[int, int] | None = None
    min_pixels: int | None = None
    max_pixels: int | None = None
    video_pool_mode: str | None = None
    video_newline: str | None = None
    decoder_dim: int = 256
    decoder_heads: int = 8
    decoder_layers: int = 1
    decoder_mlp_ratio: int = 2
    decoder_visual_source: str = "hidden"
    decoder_box_head: str = "reference"  # how the space decoder regresses boxes (reference | mlp)
    decoder_text_match: bool = False
    decoder_temporal: bool = False
    decoder_motion: bool = False
    decoder_pixel_stem: bool = False
    decoder_text_source: str = "hidden"
    span_source: str = "combined"
    box_head: str = "decoder"  # where the boxes come from (decoder | text)
    relevance_threshold: float = 0.5
    relevance_target: str = "in_span"
    max_new_tokens: int = 24
    max_new_tokens_text_boxes: int = 1024
    prompt_prefix: str = CORE_PROMPT_PREFIX
    frame_template: str = CORE_FRAME_TEMPLATE
    frame_suffix: str = CORE_FRAME_SUFFIX
    instruction_template: str = CORE_INSTRUCTION_TEMPLATE
    box_text_template: str = CORE_BOX_TEXT_TEMPLATE
    loss_lm_weight: float = DEFAULT_LOSS_WEIGHTS["lm"]
    loss_l1_weight: float = DEFAULT_LOSS_WEIGHTS["l1"]
    loss_giou_weight: float = DEFAULT_LOSS_WEIGHTS["giou"]
    loss_relevance_weight: float = DEFAULT_LOSS_WEIGHTS["relevance"]
    loss_centre_weight: float = DEFAULT_LOSS_WEIGHTS["centre"]
    initializer_range: float = 0.02
    seed: int = 0
    trust_remote_code: bool = False

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        if self.span_source not in SPAN_SOURCES:
            raise ValueError(f"span_source must be one of {SPAN_SOURCES}, got {self.span_source!r}")
        if self.relevance_target not in RELEVANCE_TARGETS:
            raise ValueError(f"relevance_target must be one of {RELEVANCE_TARGETS}, got {self.relevance_target!r}")
        if self.box_head not in BOX_HEADS:
            raise ValueError(f"box_head must be one of {BOX_HEADS}, got {self.box_head!r}")
        if self.decoder_visual_source not in DECODER_VISUAL_SOURCES:
            raise ValueError(f"decoder_visual_source must be one of {DECODER_VISUAL_SOURCES}")
        if self.decoder_pixel_stem and self.decoder_visual_source != "patches":
            raise ValueError("decoder_pixel_stem adds to the decoder's patch grid: it needs "
                             f"decoder_visual_source='patches', got {self.decoder_visual_source!r}")
        if self.decoder_text_source not in DECODER_TEXT_SOURCES:
            raise ValueError(f"decoder_text_source must be one of {DECODER_TEXT_SOURCES}, got {self.decoder_text_source!r}")
        if self.decoder_box_head not in DECODER_BOX_HEADS:
            raise ValueError(f"decoder_box_head must be one of {DECODER_BOX_HEADS}, got {self.decoder_box_head!r}")
        if not 1 <= int(self.num_frames) <= int(self.max_frames):
            raise ValueError(f"num_frames must be in [1, max_frames={self.max_frames}], got {self.num_frames}")
        if self.decoder_dim % self.decoder_heads:
            raise ValueError(f"decoder_dim {self.decoder_dim} is not divisible by decoder_heads {self.decoder_heads}")
        if "{query}" not in self.instruction_template:
            raise ValueError("instruction_template must contain '{query}'")
        if self.video_pool_mode not in (None, "bilinear", "average"):
            raise ValueError(f"video_pool_mode must be bilinear or average, got {self.video_pool_mode!r}")
        if self.video_newline not in (None, "none", "row"):
            raise ValueError(f"video_newline must be none or row, got {self.video_newline!r}")
        if self.frame_size is not None:
            self.frame_size = [int(v) for v in self.frame_size]

    @property
    def hidden_size(self) -> int:
        """The LLM width (query embeddings and decoder inputs live in it)."""
        return int(self.vlm_config.get_text_config().hidden_size)


__all__ = ["SpaceVLLMConfig", "SPAN_SOURCES", "BOX_HEADS"]
