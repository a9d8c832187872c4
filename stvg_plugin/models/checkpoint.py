"""Checkpoint-file policy: safetensors only; pickle-based weights and remote code need an explicit opt-in.

Pickle files can run code when loaded, so a folder whose only weights are ``.bin``/``.pt``/``.pth``/
``.ckpt`` is refused with a message naming the files, unless the caller passes ``allow_pickle=True``.

Python modules shipped inside a checkpoint run when transformers follows an ``auto_map`` with
``trust_remote_code=True``. Whether to trust them is the caller's decision only (a CLI key, an
lmms-eval model argument, an operator parameter): a value written in the checkpoint's own
``config.json`` is never used, and a folder whose config files ask for remote code (an ``auto_map``
or ``"trust_remote_code": true``) is refused, naming the file, unless the caller opted in.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stvg_plugin.data import StvgError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


class UnsafeCheckpointError(StvgError):
    """A checkpoint that would need unpickling (or running its own Python code) to load."""


#: config files are small; anything bigger is not a config file we should parse
_MAX_CONFIG_BYTES = 16 << 20


def _asks_for_remote_code(obj: Any, depth: int = 0) -> str | None:
    """The key that asks for code execution (``auto_map`` anywhere, or ``trust_remote_code: true``), else None."""
    if depth > 8:
        return None
    if isinstance(obj, dict):
        if obj.get("auto_map"):
            return "auto_map"
        if obj.get("trust_remote_code") not in (None, False):
            return "trust_remote_code"
        for value in obj.values():
            found = _asks_for_remote_code(value, depth + 1)
            if found:
                return found
    return None


def check_remote_code(directory: str | Path, *, trust_remote_code: bool = False) -> None:
    """Refuse a folder whose config files ask to run its own Python code, unless the caller trusts it.

    Reads every ``*config*.json`` of ``directory`` (``config.json``, ``tokenizer_config.json``,
    ``preprocessor_config.json``, ``processor_config.json`` ...). Error messages name the file and
    the key, never the file's content.
    """
    if trust_remote_code:
        return
    d = Path(directory)
    if not d.is_dir():
        return  # the loader reports a missing folder itself
    for path in sorted(d.glob("*config*.json")):
        if not path.is_file():
            continue
        if path.stat().st_size > _MAX_CONFIG_BYTES:
            raise StvgError(f"{path}: {path.stat().st_size} bytes; expected a small JSON config file")
        try:
            obj = json.loads(path.read_bytes())
        except (ValueError, RecursionError):
            raise StvgError(f"{path}: not a valid JSON config file") from None
        key = _asks_for_remote_code(obj)
        if key:
            raise UnsafeCheckpointError(
                f"{path}: asks to run Python code from the checkpoint folder ({key!r}); refusing. Pass "
                "trust_remote_code=true (stvg: +model.trust_remote_code=true; lmms-eval: --model_args "
                "...,trust_remote_code=True; FiftyOne: the operator's trust_remote_code) only if you trust this folder"
            )


def check_checkpoint_files(directory: str | Path, *, allow_pickle: bool = False) -> list[Path]:
    """Return the safetensors weight files of ``directory`` or raise a clear error."""
    d = Path(directory)
    if not d.is_dir():
        raise StvgError(f"checkpoint folder not found: {d}")
    safe = sorted(d.glob("*.safetensors"))
    pickled = sorted(p for p in d.iterdir() if p.suffix in PICKLE_SUFFIXES and p.is_file())
    if not safe and pickled and not allow_pickle:
        names = ", ".join(p.name for p in pickled)
        raise UnsafeCheckpointError(
            f"{d}: only pickle-based weights found ({names}); refusing to load them. Convert to safetensors, "
            "or pass allow_pickle=True if you trust this file"
        )
    if not safe and not pickled:
        raise StvgError(f"{d}: no model weights (*.safetensors) found")
    # without it transformers would build the class's default config - for SpaceVLLM the full-size
    # model, gigabytes allocated before the weights are found not to fit
    if not (d / "config.json").is_file():
        raise StvgError(f"{d}: no config.json; expected a folder written by save_pretrained")
    for path in safe:
        check_safetensors_file(path)
    return safe


def check_safetensors_file(path: Path) -> None:
    """Parse the header (no tensor is read): a broken, oversized or truncated file is one clear line."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt"):
            pass
    except (SafetensorError, OSError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise UnsafeCheckpointError(f"{path}: not a readable safetensors file ({first})") from None
