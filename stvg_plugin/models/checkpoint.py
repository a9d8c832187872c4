"""Checkpoint-file policy: safetensors only; pickle-based weights need an explicit opt-in.

Pickle files can run code when loaded, so a folder whose only weights are ``.bin``/``.pt``/``.pth``/
``.ckpt`` is refused with a message naming the files, unless the caller passes ``allow_pickle=True``.
"""

from __future__ import annotations

from pathlib import Path

from stvg_plugin.data import StvgError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


class UnsafeCheckpointError(StvgError):
    """A checkpoint that would need unpickling to load."""


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
    return safe
