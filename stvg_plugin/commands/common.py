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


SNIFF_BYTES = 1 << 16  # enough of the head of a file to tell the formats apart


def format_hint(path: Path, benchmark: str) -> str | None:
    """``benchmark=...`` to suggest when ``path`` looks like another format than ``benchmark`` reads.

    Looks only at the structure of the file's head (never echoes its contents): a first line that
    is a whole JSON object with a ``qid`` is our unified JSONL; ``<video> <start> <end>##<text>`` is
    Charades-STA; one JSON document spanning lines is a native benchmark file (HC-STVG when its
    entries carry ``st_frame``).
    """
    import json
    import re

    try:
        with path.open("rb") as fh:
            head = fh.read(SNIFF_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return None
    lines = [line for line in head.splitlines() if line.strip()]
    if not lines:
        return None
    try:
        first = json.loads(lines[0])
    except ValueError:
        first = None
    if isinstance(first, dict) and "qid" in first:
        guess, what = "unified", "unified JSONL (one query per line)"
    elif re.match(r"^\S+\s+\S+\s+\S+\s*##", lines[0]):
        guess, what = "charades_sta", "Charades-STA text ('<video> <start> <end>##<sentence>')"
    elif lines[0].lstrip()[:1] in ("{", "[") and first is None:
        if '"st_frame"' in head:
            guess, what = "hcstvg_v1 or benchmark=hcstvg_v2", "an HC-STVG annotation file"
        else:
            guess, what = "hcstvg_v1|hcstvg_v2|vidstg|vstar", "a native benchmark JSON file"
        if benchmark != "unified":
            return None  # already a native reader: its own message says what is wrong
    else:
        return None
    if guess.split(" ")[0] == benchmark:
        return None
    return f"the file looks like {what}: pass benchmark={guess}"


def load_queries_from_cfg(cfg: DictConfig) -> list:
    """The benchmark's queries named by ``benchmark``/``annotations``/``video_root``/``benchmark_kwargs``.

    ``benchmark_kwargs`` carries reader options a benchmark needs beyond the annotation file
    (VidSTG: ``trajectories=PATH`` or ``vidor_dir=DIR``; HC-STVG v2: ``video_parts=PATH``).
    """
    from omegaconf import OmegaConf

    from stvg_plugin.adapters import benchmark_names, load_benchmark

    if cfg.benchmark not in benchmark_names():
        raise ConfigError(f"benchmark={cfg.benchmark} is not one of {', '.join(benchmark_names())}")
    annotations = require_path(cfg, "annotations")
    extra = cfg.get("benchmark_kwargs") or {}
    kwargs = OmegaConf.to_container(extra, resolve=True) if not isinstance(extra, dict) else dict(extra)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}  # unset options (null env defaults) mean absent
    try:
        return load_benchmark(cfg.benchmark, str(annotations), video_root=cfg.get("video_root"), **kwargs)
    except StvgError as exc:
        hint = format_hint(annotations, str(cfg.benchmark))
        if hint is None:
            raise
        raise ConfigError(f"{exc}; {hint}") from exc
