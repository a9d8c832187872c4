"""One model loader for every entry point: ``stvg predict`` / ``stvg train``, the lmms-eval models and FiftyOne.

Each caller turns its own arguments (a Hydra model group, ``--model_args``, operator parameters) into a
:class:`ModelSpec` and calls :func:`load_grounder` (a ready grounder) or, to train, :func:`load_model`
(the SpaceVLLM module). The option keys each backend accepts are listed once here
(:data:`OPTION_KEYS`), and the security rules hold for every caller alike: ``trust_remote_code`` comes
only from the caller's spec, never from a file in the checkpoint; weights are safetensors unless the
spec sets ``allow_pickle``; a checkpoint's files are checked before any is opened (both
``from_pretrained`` methods do it).
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from stvg_plugin.data import StvgError
from stvg_plugin.models.grounder import Grounder
from stvg_plugin.models.modeling_spacevllm import SpaceVLLMForGrounding
from stvg_plugin.models.presets import RUNTIME_KEYS, build_from_backbone, build_tiny_model, resolve_spec

#: ``spacevllm``: the model core (a preset, a saved checkpoint or a base VLM + fresh head);
#: ``prompted``: an off-the-shelf VLM checkpoint through the prompted backend; ``openai_compatible``: a served model
KINDS = ("spacevllm", "prompted", "openai_compatible")

#: what a caller may set for a model-core model besides the preset's own keys: the runtime keys (applied
#: to a saved checkpoint's config too) and how to load it
SPACEVLLM_OPTION_KEYS = (*RUNTIME_KEYS, "backbone_path", "dtype", "video_backend", "allow_pickle", "trust_remote_code")
#: keyword arguments of ``PromptedGrounder.from_pretrained`` a caller may set (``dtype`` defaults to ``auto``)
PROMPTED_OPTION_KEYS = ("num_frames", "sample_fps", "max_frames", "frame_size", "max_pixels", "max_new_tokens", "style",
                        "family", "recipe", "reuse_video_cache", "num_workers", "allow_pickle", "dtype")
OPTION_KEYS = {"spacevllm": SPACEVLLM_OPTION_KEYS, "prompted": PROMPTED_OPTION_KEYS}


def pop_options(kind: str, arguments: MutableMapping[str, Any]) -> dict[str, Any]:
    """The model options of backend ``kind`` among ``arguments``, removed from them (the rest is the caller's own)."""
    return {key: arguments.pop(key) for key in OPTION_KEYS[kind] if key in arguments}


@dataclass(frozen=True)
class ModelSpec:
    """What to load and where, the one input of :func:`load_grounder` and :func:`load_model`.

    ``config`` is the model config as the caller holds it: a preset name or a mapping (a preset name
    under ``preset`` plus option keys, or a ``type: prompted`` / ``type: openai_compatible`` group).
    Keys a mapping sets override the preset's, and only those reach a saved checkpoint's config.
    ``checkpoint`` is a local folder (``save_pretrained`` output, or the prompted VLM's checkpoint).
    """

    kind: str
    config: Mapping[str, Any] | str
    checkpoint: str | Path | None = None
    device: str | torch.device = "cpu"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise StvgError(f"model kind must be one of {', '.join(KINDS)}, got {self.kind!r}")

    @classmethod
    def from_config(
        cls, model_cfg: Mapping[str, Any] | str, checkpoint: str | Path | None = None,
        device: str | torch.device = "cpu",
    ) -> ModelSpec:
        """The spec of a config: its ``type`` key picks the backend (the model core when absent)."""
        kind = model_cfg.get("type") if isinstance(model_cfg, Mapping) else None
        return cls(kind if kind in ("prompted", "openai_compatible") else "spacevllm", model_cfg, checkpoint, device)


def load_model(spec: ModelSpec, *, for_training: bool = False) -> SpaceVLLMForGrounding:
    """The model-core module of ``spec``, in this order of sources:

    * ``checkpoint``: a folder written by ``save_pretrained`` (safetensors; ``allow_pickle`` to accept
      .bin/.pt); the runtime keys the config sets (``num_frames``, ``span_source`` ...) apply to it;
    * ``backbone_path``: the pretrained base VLM + freshly initialised (seeded) queries and decoder;
    * a tiny preset: the seeded random model (works with nothing downloaded).

    ``for_training``: a checkpoint keeps the dtype its weights were saved in (the trainer's precision
    settings decide the compute dtype) and a tiny spec with a ``dtype`` is cast to it, as a 7B preset's
    weights would be (the precision tests train such a model); for inference a checkpoint is loaded in
    the spec's ``dtype``.
    """
    if spec.kind != "spacevllm":
        raise StvgError(f"a {spec.kind!r} model has no model-core module to load")
    cfg = spec.config
    resolved = resolve_spec(cfg)
    if spec.checkpoint is not None:
        dtype = resolved.get("dtype")
        precision = {} if for_training else {"dtype": getattr(torch, dtype) if dtype else None}
        model = SpaceVLLMForGrounding.from_pretrained(
            spec.checkpoint,
            allow_pickle=bool(resolved.get("allow_pickle", False)),
            trust_remote_code=bool(resolved.get("trust_remote_code", False)),  # the caller's key, not the checkpoint's
            **precision,
        )
        for key in RUNTIME_KEYS:  # only the keys the caller set: the checkpoint's own config keeps the rest
            if key in resolved and isinstance(cfg, Mapping) and key in cfg:
                setattr(model.config, key, resolved[key])
        return model
    if resolved.get("backbone_path"):
        return build_from_backbone(resolved)
    if resolved.get("size") == "tiny":
        model = build_tiny_model(resolved)
        if for_training and resolved.get("dtype"):
            model = model.cast_for_compute(getattr(torch, resolved["dtype"]))
        return model
    if for_training:
        raise StvgError(f"model {resolved.get('preset') or resolved.get('backbone')!r} has no weights to start from: "
                        "set model.backbone_path (a local base VLM) or init_checkpoint=DIR")
    raise StvgError(
        f"model {resolved.get('preset') or resolved.get('name') or resolved['backbone']!r} has no weights: pass a "
        "checkpoint folder or set backbone_path to a local transformers checkpoint of the base VLM"
    )


def load_grounder(
    model_cfg: ModelSpec | Mapping[str, Any] | str, checkpoint: str | Path | None = None,
    device: str | torch.device = "cpu",
) -> Any:
    """A ready grounder (``predict`` / ``ground``) for a :class:`ModelSpec`, or for a preset name or config
    mapping plus ``checkpoint`` and ``device`` (:meth:`ModelSpec.from_config`).

    The model core gives a :class:`Grounder` (see :func:`load_model`), ``type: prompted`` a
    ``PromptedGrounder`` (:func:`_load_prompted`), ``type: openai_compatible`` a served grounder.
    """
    if isinstance(model_cfg, ModelSpec):
        if checkpoint is not None:
            raise TypeError("pass the checkpoint in the ModelSpec, not beside it")
        spec = model_cfg
    else:
        spec = ModelSpec.from_config(model_cfg, checkpoint, device)
    if spec.kind == "prompted":
        return _load_prompted(spec)
    if spec.kind == "openai_compatible":
        from stvg_plugin.models.served import load_served

        return load_served(dict(spec.config))
    model = load_model(spec)
    model.to(spec.device)
    return Grounder(model, video_backend=resolve_spec(spec.config).get("video_backend", "auto"))


def _load_prompted(spec: ModelSpec):
    """``{"type": "prompted", "family": NAME, "path": DIR, ...}``: an off-the-shelf VLM through the prompted
    backend. ``family`` must match the checkpoint's ``model_type``; ``style`` (a family name or a mapping of
    prompt fields) reaches the backend as a ``PromptStyle``; ``tiny: true`` without a path builds the
    family's tiny random checkpoint (seed ``seed``) in a temporary folder, so nothing is downloaded.
    A ``null`` option means the backend's default."""
    from stvg_plugin.models.prompted import PromptedGrounder, build_tiny_prompted

    cfg = spec.config if isinstance(spec.config, Mapping) else {}
    path = spec.checkpoint or cfg.get("path")
    if not path and cfg.get("tiny"):
        import tempfile

        family = str(cfg.get("family") or "qwen2_5_vl")
        path = build_tiny_prompted(Path(tempfile.mkdtemp(prefix=f"stvg_tiny_{family}_")), int(cfg.get("seed", 0)),
                                   family=family)
    if not path:
        raise StvgError("a prompted model needs a local checkpoint folder: pass checkpoint=PATH (or model.path=PATH)")
    kwargs = {k: cfg[k] for k in PROMPTED_OPTION_KEYS if k != "dtype" and cfg.get(k) is not None}
    if isinstance(kwargs.get("frame_size"), list):
        kwargs["frame_size"] = tuple(kwargs["frame_size"])
    return PromptedGrounder.from_pretrained(path, device=str(spec.device), dtype=cfg.get("dtype") or "auto", **kwargs)
