"""Checks shared by the subcommands: fail before any work starts, naming the setting to change."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from stvg_plugin.data import StvgError


class ConfigError(StvgError, ValueError):
    """A setting is missing or points nowhere; the message names the key to set."""


def require_setting(cfg: DictConfig, key: str) -> str:
    value = cfg.get(key)
    if value is None or str(value) in ("", "???"):
        raise ConfigError(f"'{key}' is not set: pass {key}=...")
    return str(value)


def require_path(cfg: DictConfig, key: str, kind: str = "file") -> Path:
    """The path in ``cfg[key]``; raises ``ConfigError`` naming ``key`` when it does not exist."""
    path = Path(require_setting(cfg, key)).expanduser()
    ok = path.is_file() if kind == "file" else path.is_dir() if kind == "dir" else path.exists()
    if not ok:
        raise ConfigError(f"{key}={path} does not exist (expected a {kind}); set {key}=PATH")
    return path


def load_queries_from_cfg(cfg: DictConfig) -> list:
    """The benchmark's queries named by ``benchmark``/``annotations``/``video_root``/``benchmark_kwargs``.

    ``benchmark_kwargs`` carries reader options a benchmark needs beyond the annotation file
    (VidSTG: ``trajectories=PATH`` or ``vidor_dir=DIR``; HC-STVG v2: ``video_parts=PATH``).
    """
    from omegaconf import OmegaConf

    from stvg_plugin.adapters import BENCHMARKS, load_benchmark

    if cfg.benchmark not in BENCHMARKS:
        raise ConfigError(f"benchmark={cfg.benchmark} is not one of {', '.join(BENCHMARKS)}")
    annotations = require_path(cfg, "annotations")
    extra = cfg.get("benchmark_kwargs") or {}
    kwargs = OmegaConf.to_container(extra, resolve=True) if not isinstance(extra, dict) else dict(extra)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}  # unset options (null env defaults) mean absent
    return load_benchmark(cfg.benchmark, str(annotations), video_root=cfg.get("video_root"), **kwargs)
