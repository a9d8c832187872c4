"""Model core: SpaceVLLM-style grounding model, backbone adapters, presets and the ``Grounder``.

Public entry points: :func:`load_grounder` and :class:`Grounder` (contract in docs/CONTRACTS.md); every
entry point loads models through :mod:`stvg_plugin.models.loading` (:class:`ModelSpec`).
"""

from stvg_plugin.models.configuration_spacevllm import SpaceVLLMConfig
from stvg_plugin.models.grounder import Grounder
from stvg_plugin.models.loading import ModelSpec, load_grounder, load_model
from stvg_plugin.models.modeling_spacevllm import (
    GroundingInputs,
    SpaceVLLMForGrounding,
    SpaceVLLMOutput,
    VideoPrefix,
)
from stvg_plugin.models.presets import PRESETS, build_meta_model, build_tiny_model, resolve_spec
from stvg_plugin.models.processing_spacevllm import SpaceVLLMProcessor

__all__ = [
    "PRESETS",
    "Grounder",
    "GroundingInputs",
    "ModelSpec",
    "SpaceVLLMConfig",
    "SpaceVLLMForGrounding",
    "SpaceVLLMOutput",
    "SpaceVLLMProcessor",
    "VideoPrefix",
    "build_meta_model",
    "build_tiny_model",
    "load_grounder",
    "load_model",
    "resolve_spec",
]
