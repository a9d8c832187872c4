"""Checkpoint folders: ``checkpoints/step_NNNNNNN/{model/, state/, trainer_state.json}``.

* ``model/``: the model core's own format (``save_pretrained``: safetensors + config + processor),
  LoRA folded in, so ``stvg predict checkpoint=.../model`` works on any checkpoint;
* ``state/``: accelerate's ``save_state`` (optimizer, scheduler, RNG) for an exact resume;
* ``trainer_state.json`` is written last and the folder is renamed into place only when complete,
  so a crash (or a NaN stop) never leaves a half checkpoint that ``resume=auto`` would pick up.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from stvg_plugin.data import StvgError, atomic_write_text

STATE_FILE = "trainer_state.json"
_STEP_RE = re.compile(r"^step_(\d+)$")


def checkpoint_root(output_dir: Path) -> Path:
    return Path(output_dir) / "checkpoints"


def checkpoint_name(step: int) -> str:
    return f"step_{step:07d}"


def is_complete(path: Path) -> bool:
    return (path / STATE_FILE).is_file() and (path / "model").is_dir() and (path / "state").is_dir()


def list_checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = checkpoint_root(output_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_RE.match(p.name)) and is_complete(p)]
    return [p for _, p in sorted(found)]


def resolve_resume(resume: Any, output_dir: Path) -> Path | None:
    """``auto`` -> the latest complete checkpoint (or ``None``); a path -> that checkpoint; falsy -> ``None``."""
    if resume in (None, False, "", "none", "null", "false"):
        return None
    if str(resume) == "auto":
        found = list_checkpoints(output_dir)
        return found[-1] if found else None
    path = Path(str(resume)).expanduser()
    if not is_complete(path):
        raise StvgError(f"resume={path} is not a complete checkpoint folder (needs model/, state/ and {STATE_FILE})")
    return path


def read_state(path: Path) -> dict[str, Any]:
    return json.loads((path / STATE_FILE).read_text(encoding="utf-8"))


def staging_dir(output_dir: Path, step: int) -> Path:
    """A fresh temporary folder next to the final one (same filesystem, so the rename is atomic)."""
    tmp = checkpoint_root(output_dir) / f".tmp_{checkpoint_name(step)}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def fresh_dir(path: Path) -> Path:
    """An empty folder at ``path`` (a leftover of a killed run is removed first)."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def replace_dir(tmp: Path, final: Path) -> Path:
    """Rename the complete folder ``tmp`` to ``final``; an existing ``final`` is moved aside first and
    deleted only after the rename, so at every moment ``final`` is absent, the old one or the new one."""
    aside = final.with_name(f".old_{final.name}")
    if aside.exists():
        shutil.rmtree(aside)
    if final.exists():
        final.rename(aside)
    tmp.rename(final)
    shutil.rmtree(aside, ignore_errors=True)
    return final


def publish(tmp: Path, output_dir: Path, step: int, state: dict[str, Any], keep_last: int) -> Path:
    """Write the state file, rename ``tmp`` into place, then delete all but the ``keep_last`` newest."""
    atomic_write_text(tmp / STATE_FILE, json.dumps(state, indent=2, sort_keys=True))
    final = checkpoint_root(output_dir) / checkpoint_name(step)
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    if keep_last > 0:
        for old in list_checkpoints(output_dir)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    return final
