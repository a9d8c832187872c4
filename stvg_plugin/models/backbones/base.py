"""The small interface every video-LLM backbone implements for the SpaceVLLM-style core.

The core never touches a backbone's internals: it asks an adapter for per-frame visual embeddings
(after the projector), text embeddings, the decoder-only LM to run on ``inputs_embeds`` with a KV
cache, the LM head, and the prefix position ids. Adding a backbone = one adapter file + one
registry entry in :mod:`stvg_plugin.models.backbones`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedConfig, PreTrainedModel

from stvg_plugin.data import StvgError

# token kinds in a prefix layout
TEXT, VISUAL, QUERY = 0, 1, 2


def tiny_text_config(vocab_size: int, special_ids: dict[str, int]) -> dict[str, Any]:
    """The tiny LM every backbone's tiny preset shares: Qwen2-style, width 64, 2 layers, 4/2 heads."""
    return dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        eos_token_id=special_ids["eos"],
        pad_token_id=special_ids["pad"],
        bos_token_id=None,
    )


@dataclass
class FrameFeatures:
    """Per-frame visual features in the LLM's width, each on a row-major ``rows x cols`` grid.

    ``tokens`` are what the LLM reads; ``patches`` are the finest projected features the backbone has
    before it merges or pools them into tokens (LLaVA-OneVision: the projector output before its 2x2
    pooling, 4x the tokens). Backbones that merge before projecting (Qwen2.5-VL's merger) have nothing
    finer in the LLM's width: ``patches`` is ``tokens`` there.
    """

    tokens: torch.Tensor  # [T, P, D]
    grid_hw: tuple[int, int]
    patches: torch.Tensor  # [T, G, D]
    patch_grid_hw: tuple[int, int]
    #: indices into the P tokens that are grid cells (``None``: all); row newlines are not
    cell_index: torch.Tensor | None = None
    #: the frames as the vision tower read them, ``[T, 3, H, W]`` (``None``: the backbone hands over none,
    #: e.g. Qwen2.5-VL's pixel input is already cut into patches); the decoder's pixel stem reads these
    pixels: torch.Tensor | None = None


class BackboneAdapter(nn.Module):
    """Wraps one transformers ``*ForConditionalGeneration`` model (held as ``self.vlm``)."""

    name: ClassVar[str] = ""
    vlm_class: ClassVar[type[PreTrainedModel]]
    #: special token (in the tokenizer) whose id marks visual positions in a prefix layout
    visual_token: ClassVar[str] = "<image>"
    #: whether :meth:`frame_features` can hand over the frames (``FrameFeatures.pixels``) at all, for the
    #: decoder's pixel stem (a model asking for the stem on a backbone without them is refused when built)
    can_hand_over_pixels: ClassVar[bool] = False
    #: whether :meth:`frame_features` hands over the frames (``FrameFeatures.pixels``); set by ``configure``
    keep_pixels: bool = False

    def __init__(self, vlm: PreTrainedModel):
        super().__init__()
        self.vlm = vlm

    def configure(self, config: Any) -> None:
        """Read the ``SpaceVLLMConfig`` switches this backbone uses (called once by the model)."""

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(cls, vlm_config: PreTrainedConfig) -> BackboneAdapter:
        """Random init from the config alone (the caller seeds torch)."""
        return cls(cls.vlm_class._from_config(vlm_config))

    @classmethod
    def from_pretrained(
        cls, path: str | Path, *, trust_remote_code: bool = False, dtype: torch.dtype | None = None
    ) -> BackboneAdapter:
        """Load a local transformers checkpoint of the wrapped class (never from a hub).

        Before any weights are allocated: the folder's ``model_type`` must be the wrapped class's
        and its safetensors must hold the parameter count of the model its config describes (built on
        the meta device); after loading, more than a small fraction of parameters left uninitialised
        is an error naming the keys (:mod:`stvg_plugin.models.checkpoint_checks`).
        """
        from stvg_plugin.models.checkpoint_checks import check_loading_info, check_model_type, check_parameter_count

        if not Path(path).is_dir():
            raise StvgError(f"backbone checkpoint folder not found: {path}")
        config_class = getattr(cls.vlm_class, "config_class", None)  # None: not a transformers class, no checks
        if config_class is not None:
            check_model_type(path, [config_class.model_type], f"the {cls.name} backbone")
            config = config_class.from_pretrained(str(path), local_files_only=True)
            with torch.device("meta"):
                meta = cls.vlm_class._from_config(config)
            check_parameter_count(path, meta)
        vlm, info = cls.vlm_class.from_pretrained(
            str(path), local_files_only=True, trust_remote_code=trust_remote_code, dtype=dtype, use_safetensors=True,
            output_loading_info=True,
        )
        check_loading_info(path, vlm, info)
        return cls(vlm)

    @staticmethod
    def tiny_config(vocab_size: int, special_ids: dict[str, int]) -> PreTrainedConfig:
        raise NotImplementedError

    @staticmethod
    def large_config() -> PreTrainedConfig:
        """The real-size (7B) config, for meta-device shape checks and FLOP counts."""
        raise NotImplementedError

    @staticmethod
    def build_frame_processor(frame_size: tuple[int, int]) -> Any:
        """A transformers image processor turning RGB frames into this backbone's pixel inputs."""
        raise NotImplementedError

    @staticmethod
    def load_frame_processor(path: str | Path, frame_size: tuple[int, int] | None) -> Any:
        raise NotImplementedError

    @classmethod
    def frame_processor_for(cls, config: Any) -> Any:
        """The frame processor a random-initialised model of ``config`` (a ``SpaceVLLMConfig``) needs."""
        return cls.build_frame_processor(tuple(config.frame_size) if config.frame_size else None)

    @classmethod
    def load_frame_processor_for(cls, path: str | Path, config: Any) -> Any:
        """The base checkpoint's own frame processor, with ``config``'s overrides (frame size, pixel bounds)."""
        return cls.load_frame_processor(path, tuple(config.frame_size) if config.frame_size else None)

    # ------------------------------------------------------------------ model pieces
    @property
    def hidden_size(self) -> int:
        return int(self.vlm.config.get_text_config().hidden_size)

    @property
    def language_model(self) -> nn.Module:
        """Decoder-only LM taking ``inputs_embeds``, ``position_ids``, ``past_key_values``."""
        return self.vlm.model.language_model

    @property
    def lm_head(self) -> nn.Module:
        return self.vlm.lm_head

    def embed_text(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.vlm.get_input_embeddings()(input_ids)

    def preprocess_frames(self, processor: Any, frames: np.ndarray) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def frame_features(self, pixel_inputs: dict[str, torch.Tensor]) -> FrameFeatures:
        """Visual embeddings after the projector (tokens + finer patches), one vision-tower pass."""
        raise NotImplementedError

    #: pixel input key -> the dimension its frames are stacked along (``frame_features_many`` joins videos on it)
    frame_dims: ClassVar[dict[str, int]] = {}

    def frames_joinable(self, pixel_inputs: list[dict[str, torch.Tensor]]) -> bool:
        """Whether these videos' frames can go through the vision tower as one batch (same frame shape)."""
        if not self.frame_dims or any(set(p) != set(self.frame_dims) for p in pixel_inputs):
            return False
        for key, dim in self.frame_dims.items():
            shapes = {tuple(s for i, s in enumerate(p[key].shape) if i != dim) for p in pixel_inputs}
            if len(shapes) != 1:
                return False
        return True

    def frame_features_many(self, pixel_inputs: list[dict[str, torch.Tensor]]) -> list[FrameFeatures]:
        """:meth:`frame_features` of several videos, their frames run through the vision tower together.

        Why: a training micro-batch's videos would otherwise each pay a vision-tower call of a few frames.
        The tower and projector see each frame on its own, so joining equals one call per video (to float
        rounding). Videos whose frames differ in shape run one by one.
        """
        if len(pixel_inputs) < 2 or not self.frames_joinable(pixel_inputs):
            return [self.frame_features(p) for p in pixel_inputs]
        joined = {k: torch.cat([p[k] for p in pixel_inputs], dim=d) for k, d in self.frame_dims.items()}
        counts = [int(self.count_frames(p)) for p in pixel_inputs]
        whole = self.frame_features(joined)
        tokens, patches = whole.tokens.split(counts), whole.patches.split(counts)
        pixels = whole.pixels.split(counts) if whole.pixels is not None else [None] * len(counts)
        return [
            FrameFeatures(tokens=t, grid_hw=whole.grid_hw, patches=p, patch_grid_hw=whole.patch_grid_hw,
                          cell_index=whole.cell_index, pixels=x)
            for t, p, x in zip(tokens, patches, pixels)
        ]

    def count_frames(self, pixel_inputs: dict[str, torch.Tensor]) -> int:
        """Frames in one video's pixel inputs."""
        raise NotImplementedError

    def frame_tokens(self, pixel_inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Visual embeddings the LLM reads, one row of ``P`` tokens per frame: ``[T, P, D]``."""
        return self.frame_features(pixel_inputs).tokens

    def prefix_position_ids(
        self, kinds: torch.Tensor, pixel_inputs: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, int]:
        """Position ids of a prefix (``[1, L]`` or ``[3, 1, L]``) and the next free text position."""
        length = int(kinds.shape[-1])
        return torch.arange(length, device=kinds.device)[None], length
