"""Wiring for one training run (used by ``stvg train`` and the examples): model, parts, data, trainer.

``prepare`` returns a ready :class:`Trainer` (resumed if asked) so tests can step it themselves;
``fit`` runs it to the end, saves ``final/`` and writes ``training_summary.json``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from stvg_plugin.data import GroundingQuery, StvgError, atomic_write_text
from stvg_plugin.training import checkpoints as ckpt
from stvg_plugin.training.dataset import TrainData, expand_tasks
from stvg_plugin.training.parts import PARTS, apply_lora, set_trainable, summarize
from stvg_plugin.training.trainer import Trainer, TrainerConfig
from stvg_plugin.util.threads import set_torch_threads

log = logging.getLogger(__name__)

_SPEC_DROP = ("type",)


def clean_spec(model_cfg: Mapping[str, Any] | str) -> dict[str, Any] | str:
    """A Hydra model group -> a presets spec: ``null`` means "the preset's value", so it is dropped."""
    if isinstance(model_cfg, str):
        return model_cfg
    return {k: v for k, v in model_cfg.items() if v is not None and k not in _SPEC_DROP}


def enable_gradient_checkpointing(model: Any) -> None:
    """Recompute every LLM decoder layer and vision encoder layer in the backward pass (non-reentrant).

    transformers' own switch on the wrapped VLM (the adapter is a plain module, so the outer
    model's call would not reach it). Non-reentrant checkpointing gives gradients equal to the plain
    backward (test) and works with frozen inputs and LoRA. Active only in ``train()`` mode.
    """
    vlm = model.backbone.vlm
    enable = getattr(vlm, "activation_checkpointing_enable", None) or vlm.gradient_checkpointing_enable
    enable({"use_reentrant": False})


def build_model(model_cfg: Mapping[str, Any] | str, init_checkpoint: str | Path | None = None) -> Any:
    """The model to train: a saved checkpoint, a pretrained base VLM (``backbone_path``) or a tiny preset."""
    from stvg_plugin.models import SpaceVLLMForGrounding
    from stvg_plugin.models.presets import RUNTIME_KEYS, build_from_backbone, build_tiny_model, resolve_spec

    spec = resolve_spec(clean_spec(model_cfg))
    if init_checkpoint is not None:
        model = SpaceVLLMForGrounding.from_pretrained(
            init_checkpoint,
            allow_pickle=bool(spec.get("allow_pickle", False)),
            trust_remote_code=bool(spec.get("trust_remote_code", False)),  # the caller's key, not the checkpoint's
        )
        for key in RUNTIME_KEYS:
            if isinstance(model_cfg, Mapping) and model_cfg.get(key) is not None:
                setattr(model.config, key, spec[key])
        return model
    if spec.get("backbone_path"):
        return build_from_backbone(spec)
    if spec.get("size") == "tiny":
        model = build_tiny_model(spec)
        # a tiny spec with a dtype is loaded like a 7B preset (bf16 weights): the precision tests use it
        return model.cast_for_compute(getattr(torch, spec["dtype"])) if spec.get("dtype") else model
    raise StvgError(f"model {spec.get('preset') or spec.get('backbone')!r} has no weights to start from: "
                    "set model.backbone_path (a local base VLM) or init_checkpoint=DIR")


def prepare(
    model_cfg: Mapping[str, Any] | str,
    queries: Sequence[GroundingQuery],
    output_dir: str | Path,
    *,
    trainer: Mapping[str, Any] | TrainerConfig | None = None,
    task_weights: Mapping[str, float] | None = None,
    derive_tasks: Sequence[str] = (),
    train_parts: Sequence[str] | None = None,
    lora: Mapping[str, Any] | None = None,
    resume: Any = "auto",
    init_checkpoint: str | Path | None = None,
) -> Trainer:
    """``train_parts`` / ``trainer.cache_frames`` ``None`` = the preset's choice (the real presets: a
    frozen vision tower, no frame cache; tiny: everything trains, frames cached). The preset's
    ``gradient_checkpointing`` (on for the real presets) is applied here, before LoRA wraps the LLM."""
    from stvg_plugin.models.presets import resolve_spec

    cfg = trainer if isinstance(trainer, TrainerConfig) else TrainerConfig.from_mapping(dict(trainer or {}))
    set_torch_threads(cfg.num_threads)
    spec = resolve_spec(clean_spec(model_cfg))
    model = build_model(model_cfg, init_checkpoint)
    if spec.get("gradient_checkpointing"):
        enable_gradient_checkpointing(model)
    if lora:
        apply_lora(model, lora.get("r", 8), lora.get("alpha", 16), lora.get("target_modules", ["q_proj", "v_proj"]),
                   lora.get("dropout", 0.0))
    if train_parts is None:
        train_parts = spec.get("train_parts") or PARTS
    counts = set_trainable(model, list(train_parts), lora=bool(lora))
    log.info(summarize(counts, model))
    samples = expand_tasks(queries, derive_tasks)
    weights = dict(task_weights) if task_weights is not None else {"stvg": 1.0}
    cache = cfg.cache_frames if cfg.cache_frames is not None else bool(spec.get("cache_frames", True))
    data = TrainData(model, samples, weights, seed=cfg.seed, cache=cache, cache_max_bytes=cfg.cache_max_bytes,
                     num_workers=cfg.num_workers, backend=cfg.video_backend)
    if data.stats.skipped_videos:
        print(f"skipping {len(data.stats.skipped_videos)} undecodable videos "
              f"({data.stats.skipped_samples['undecodable_video']} samples):")
        for path, reason in list(data.stats.skipped_videos.items())[:20]:
            print(f"  {path}: {reason}")
    t = Trainer(model, data, cfg, output_dir)
    found = ckpt.resolve_resume(resume, Path(output_dir))
    if found is not None:
        t.resume(found)
        print(f"resuming from {found} (step {t.step})")
    else:
        t.start_fresh()
    return t


def fit(model_cfg: Mapping[str, Any] | str, queries: Sequence[GroundingQuery], output_dir: str | Path,
        **kwargs: Any) -> dict[str, Any]:
    """Train to ``max_steps``, save ``final/`` and ``training_summary.json``; returns the summary."""
    t = prepare(model_cfg, queries, output_dir, **kwargs)
    run = t.train()
    final = t.save_final()
    summary = {
        "final": str(final),
        **run,
        "max_steps": t.cfg.max_steps,
        "samples": len(t.data.samples),
        "tasks": {task: len(idx) for task, idx in t.data.stream.by_task.items()},
        "data": t.data.stats.to_json(),
    }
    if t.accelerator.is_main_process:
        atomic_write_text(Path(output_dir) / "training_summary.json", json.dumps(summary, indent=2))
    stats = t.data.stats
    if stats.skipped_videos or stats.clipped_spans or stats.skipped_samples:
        print(f"data problems: {len(stats.skipped_videos)} undecodable videos, {stats.clipped_spans} spans clipped "
              f"to their video, skipped draws {dict(stats.skipped_samples)}")
    return summary
