"""``stvg train``: fine-tune the model core on unified annotations (the Uni-STG task mix).

Writes ``output_dir/final/`` (the model core's safetensors format, loadable by ``stvg predict
checkpoint=...``), rotating ``checkpoints/step_N/`` with the trainer state for ``resume=auto``,
``train_log.jsonl`` and ``training_summary.json``. A NaN/inf loss stops with exit status 2 and a
message naming the step; the last checkpoint on disk stays as it was.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from stvg_plugin.commands.common import ConfigError, load_queries_from_cfg, require_path

log = logging.getLogger("stvg.train")


def _container(value: object) -> object:
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, DictConfig) or OmegaConf.is_list(value) \
        else value


def run(cfg: DictConfig, output_dir: Path) -> Path:
    queries = load_queries_from_cfg(cfg)
    if not queries:
        raise ConfigError(f"annotations={cfg.annotations} has no queries")
    init = require_path(cfg, "init_checkpoint", kind="dir") if cfg.get("init_checkpoint") else None
    lora = _container(cfg.get("lora"))
    if lora is not None and not isinstance(lora, dict):
        raise ConfigError("lora must be null or a mapping {r, alpha, target_modules, dropout}")
    from stvg_plugin.training import fit  # torch + transformers: seconds, so after the checks

    summary = fit(
        _container(cfg.model),
        queries,
        output_dir,
        trainer=_container(cfg.trainer),
        task_weights=_container(cfg.task_weights),
        derive_tasks=list(_container(cfg.get("derive_tasks") or [])),
        train_parts=list(_container(cfg.train_parts)) if cfg.get("train_parts") is not None else None,
        lora=lora,
        resume=cfg.get("resume"),
        init_checkpoint=str(init) if init else None,
    )
    last = summary.get("last") or {}
    print(f"trained {summary['steps_run']} steps (to step {summary['step']}) in {summary['wall_s']} s; "
          f"last loss {last.get('loss', float('nan')):.4f}")
    print(f"wrote {summary['final']}")
    return Path(summary["final"])
