"""Checks a checkpoint folder passes before any weights are allocated (model family, keys, shapes).

Why: given a folder of the wrong family, transformers falls back to a class's default sizes and
builds a random multi-gigabyte model with a warning (an original lmms-lab LLaVA-Video folder,
``model_type: llava_qwen``, gave an 8B random model in which 2 tensors matched). Here the folder's
``config.json`` and the safetensors headers (names, shapes, element counts: read without the data)
are compared with the model built on the meta device (no memory), so a wrong family, missing
weights or mismatched shapes fail in seconds with one message naming the folder.

Kept apart from :mod:`stvg_plugin.models.checkpoint` (file-format policy: safetensors vs pickle).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from stvg_plugin.data import StvgError

#: at most this fraction of a model's parameters may stay uninitialised after loading
MAX_MISSING_FRACTION = 0.01

# foreign formats we can name a way out of
_FOREIGN = {
    "llava_qwen": (
        "it is the original lmms-lab LLaVA-Video/LLaVA-OneVision format (LLaVA-NeXT code base), which transformers "
        "cannot load. Use the transformers-format release (e.g. llava-hf/LLaVA-Video-7B-Qwen2-hf, model_type "
        "llava_onevision) or convert it with transformers' "
        "src/transformers/models/llava_onevision/convert_llava_onevision_weights_to_hf.py"
    ),
    "qwen2_vl": "it is a Qwen2-VL checkpoint; the qwen2_5_vl backbone needs a Qwen2.5-VL one (model_type qwen2_5_vl)",
}


class CheckpointMismatchError(StvgError):
    """A checkpoint folder that does not fit the model it is loaded into."""


def read_config(folder: str | Path) -> dict[str, Any]:
    """``config.json`` of ``folder`` as a dict, or one clear error naming the folder."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise CheckpointMismatchError(f"{folder}: no config.json; expected a folder written by save_pretrained")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointMismatchError(f"{path}: not a readable JSON file ({type(exc).__name__})") from None
    if not isinstance(cfg, dict):
        raise CheckpointMismatchError(f"{path}: expected a JSON object")
    return cfg


def check_model_type(folder: str | Path, expected: Iterable[str], what: str) -> dict[str, Any]:
    """Refuse a folder whose ``model_type`` is not one of ``expected`` (before anything is built).

    ``what`` says what was being loaded (e.g. "the llava_onevision backbone"). Returns the config dict.
    """
    cfg = read_config(folder)
    expected = tuple(expected)
    found = cfg.get("model_type")
    if found in expected:
        return cfg
    shown = "missing" if found is None else repr(found)[:80]
    hint = _FOREIGN.get(found, "") if isinstance(found, str) else ""
    raise CheckpointMismatchError(
        f"{folder}: model_type {shown} cannot be loaded as {what} (expects {' or '.join(expected)})"
        + (f": {hint}" if hint else "")
    )


def check_spacevllm_config(folder: str | Path, known_backbones: Mapping[str, str]) -> dict[str, Any]:
    """A SpaceVLLM checkpoint: ``model_type`` spacevllm, a known ``backbone`` whose VLM config matches it.

    ``known_backbones``: adapter name -> the transformers ``model_type`` its ``vlm_config`` must have.
    """
    cfg = check_model_type(folder, ["spacevllm"], "a SpaceVLLM checkpoint")
    backbone = cfg.get("backbone", "llava_onevision")
    if backbone not in known_backbones:
        raise CheckpointMismatchError(
            f"{folder}: config.json backbone {str(backbone)[:80]!r} is unknown; known: {sorted(known_backbones)}"
        )
    vlm = cfg.get("vlm_config")
    vlm_type = vlm.get("model_type") if isinstance(vlm, dict) else None
    if vlm_type != known_backbones[backbone]:
        shown = "missing" if vlm_type is None else repr(vlm_type)[:80]
        raise CheckpointMismatchError(
            f"{folder}: config.json vlm_config.model_type {shown} does not match backbone {backbone!r} "
            f"(expects {known_backbones[backbone]!r})"
        )
    return cfg


def safetensors_shapes(folder: str | Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape of every ``*.safetensors`` file of ``folder``, from the headers only."""
    from safetensors import safe_open

    shapes: dict[str, tuple[int, ...]] = {}
    for path in sorted(Path(folder).glob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt") as fh:
                for key in fh.keys():
                    shapes[key] = tuple(fh.get_slice(key).get_shape())
        except Exception as exc:  # noqa: BLE001 - a corrupt header: say which file, not what it holds
            raise CheckpointMismatchError(f"{path}: unreadable safetensors header ({type(exc).__name__})") from None
    return shapes


def _expected_shapes(model: torch.nn.Module, found: Iterable[str] | None = None) -> dict[str, tuple[int, ...]]:
    """Name -> shape of what ``model`` needs from a checkpoint (tied copies left out).

    transformers writes some models' weights under their legacy names (its ``save_pretrained``
    reverts its load-time renaming); both spellings are tried and the one sharing more names with
    ``found`` (the checkpoint's names) is used.
    """
    tied = set(getattr(model, "all_tied_weights_keys", None) or {})
    own = {k: v for k, v in model.state_dict().items() if k not in tied}
    candidates = [own]
    try:
        from transformers.core_model_loading import revert_weight_conversion

        candidates.append(revert_weight_conversion(model, dict(own)))
    except Exception:  # noqa: BLE001 - no renaming known for this model: its own names only
        pass
    names = set(found or ())
    best = max(candidates, key=lambda c: len(names.intersection(c)))
    return {k: tuple(v.shape) for k, v in best.items()}


def _listing(keys: list[str], limit: int = 8) -> str:
    more = f" ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def check_weights_match(
    folder: str | Path, meta_model: torch.nn.Module, *, max_missing_fraction: float = MAX_MISSING_FRACTION
) -> None:
    """Names and shapes in the folder's safetensors headers against ``meta_model`` (built on the meta device).

    Mismatched shapes are an error; missing tensors are an error once they hold more than
    ``max_missing_fraction`` of the model's parameters (they would stay randomly initialised), and
    the message names them. Use on folders written by this model's ``save_pretrained`` (same names).
    """
    found = safetensors_shapes(folder)
    expected = _expected_shapes(meta_model, found)
    mismatched = [f"{k} {list(found[k])} vs {list(v)}" for k, v in expected.items() if k in found and found[k] != v]
    if mismatched:
        raise CheckpointMismatchError(
            f"{folder}: {len(mismatched)} weights have other shapes than the model its config.json describes "
            f"(checkpoint vs model): {_listing(mismatched, 4)}"
        )
    missing = [k for k in expected if k not in found]
    total = sum(_numel(v) for v in expected.values()) or 1
    lost = sum(_numel(expected[k]) for k in missing)
    if missing and lost / total > max_missing_fraction:
        raise CheckpointMismatchError(
            f"{folder}: {len(missing)} weights ({lost / total:.1%} of the parameters) are missing and would stay "
            f"randomly initialised: {_listing(missing)}"
        )


def check_parameter_count(
    folder: str | Path, meta_model: torch.nn.Module, *, max_missing_fraction: float = MAX_MISSING_FRACTION
) -> None:
    """Element count of the folder's tensors against ``meta_model``'s (names may differ: transformers
    renames old checkpoint keys on load, so only the totals are compared before loading)."""
    have = sum(_numel(s) for s in safetensors_shapes(folder).values())
    need = sum(_numel(v) for v in _expected_shapes(meta_model).values()) or 1
    if have < (1.0 - max_missing_fraction) * need:
        raise CheckpointMismatchError(
            f"{folder}: the safetensors files hold {have:,} parameters, the model its config.json describes needs "
            f"{need:,} ({1 - have / need:.1%} would stay randomly initialised): missing or truncated weight files?"
        )


def check_loading_info(
    folder: str | Path, model: torch.nn.Module, info: Mapping[str, Any], *,
    max_missing_fraction: float = MAX_MISSING_FRACTION,
) -> None:
    """After a transformers ``from_pretrained(..., output_loading_info=True)``: error when the keys it
    reported missing hold more than ``max_missing_fraction`` of the parameters, or shapes mismatched."""
    mismatched = list(info.get("mismatched_keys") or [])
    if mismatched:
        raise CheckpointMismatchError(f"{folder}: weights with mismatched shapes: {_listing([str(k) for k in mismatched], 4)}")
    missing = sorted(info.get("missing_keys") or [])
    if not missing:
        return
    params = dict(model.named_parameters())
    total = sum(p.numel() for p in params.values()) or 1
    lost = sum(params[k].numel() for k in missing if k in params)
    if lost / total > max_missing_fraction:
        raise CheckpointMismatchError(
            f"{folder}: {len(missing)} weights ({lost / total:.1%} of the parameters) were not in the checkpoint "
            f"and are randomly initialised: {_listing(missing)}"
        )


def _numel(shape: Iterable[int]) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


__all__ = [
    "CheckpointMismatchError",
    "MAX_MISSING_FRACTION",
    "check_loading_info",
    "check_model_type",
    "check_parameter_count",
    "check_spacevllm_config",
    "check_weights_match",
    "read_config",
    "safetensors_shapes",
]
