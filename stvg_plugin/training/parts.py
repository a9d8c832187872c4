"""Which parts of the model train (``train_parts``), LoRA on the LLM, and LoRA-free weights for saving.

Why: a 7B run trains the queries + decoder (+ projector) and adapts the LLM with LoRA; a tiny run
from scratch trains everything. Saved checkpoints must load with the model core's plain
``from_pretrained``, so LoRA deltas are folded into the base weights of the saved state dict
(the training model itself is left untouched, so a run continues bit-identically).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

PARTS = ("queries", "decoder", "projector", "llm", "vision_tower")

# candidate attribute paths from the SpaceVLLMForGrounding root, per part (first ones that exist win)
_PART_PATHS: dict[str, tuple[str, ...]] = {
    "queries": ("st_query_embed",),
    "decoder": ("space_decoder",),
    "projector": ("backbone.vlm.model.multi_modal_projector", "backbone.vlm.model.image_newline",
                  "backbone.vlm.model.visual.merger"),
    "llm": ("backbone.vlm.model.language_model", "backbone.vlm.lm_head"),
    "vision_tower": ("backbone.vlm.model.vision_tower", "backbone.vlm.model.visual"),
}
_LORA_PREFIX = "base_model.model."


def _resolve(root: Any, path: str) -> Any:
    obj = root
    for name in path.split("."):
        obj = getattr(obj, name, None)
        if obj is None:
            return None
    return obj


def _params(obj: Any) -> list[nn.Parameter]:
    if isinstance(obj, nn.Parameter):
        return [obj]
    if isinstance(obj, nn.Module):
        return list(obj.parameters())
    return []


def set_trainable(model: nn.Module, train_parts: Sequence[str], lora: bool = False) -> dict[str, int]:
    """Freeze everything, then unfreeze ``train_parts``; returns trainable parameter counts per part.

    With ``lora`` the LLM's base weights stay frozen and ``llm`` means its LoRA adapters; the vision
    tower's Qwen ``merger`` is the projector, so ``vision_tower`` without ``projector`` leaves it frozen.
    """
    unknown = set(train_parts) - set(PARTS)
    if unknown:
        raise ValueError(f"train_parts has unknown parts {sorted(unknown)}; known: {PARTS}")
    model.requires_grad_(False)
    counts: dict[str, int] = {}
    for part in PARTS:  # fixed order: the projector's own setting wins over the enclosing vision tower's
        if part not in train_parts:
            continue
        params: list[nn.Parameter] = []
        for path in _PART_PATHS[part]:
            params += _params(_resolve(model, path))
        if part == "llm" and lora:
            params = [p for n, p in model.named_parameters() if "lora_" in n]
        for p in params:
            p.requires_grad_(True)
        counts[part] = sum(p.numel() for p in params)
    if "vision_tower" in train_parts and "projector" not in train_parts:
        for p in _params(_resolve(model, "backbone.vlm.model.visual.merger")):
            p.requires_grad_(False)
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(f"train_parts={list(train_parts)} leaves nothing to train")
    return counts


def apply_lora(model: nn.Module, r: int, alpha: float, target_modules: Iterable[str], dropout: float = 0.0) -> nn.Module:
    """Wrap the LLM (only) with peft LoRA adapters in place; returns the peft model."""
    from peft import LoraConfig, get_peft_model

    holder = model.backbone.vlm.model
    lm = holder.language_model
    config = LoraConfig(r=int(r), lora_alpha=float(alpha), target_modules=list(target_modules), lora_dropout=float(dropout))
    peft_lm = get_peft_model(lm, config)
    holder.language_model = peft_lm
    return peft_lm


def has_lora(model: nn.Module) -> bool:
    return any("lora_" in n for n, _ in model.named_parameters())


def _lora_delta(module: Any, name: str, adapter: str, state: Mapping[str, torch.Tensor] | None) -> torch.Tensor:
    """``B @ A * scaling`` from the (gathered) state dict when it holds both factors, else peft's own."""
    a_key, b_key = f"{name}.lora_A.{adapter}.weight", f"{name}.lora_B.{adapter}.weight"
    if state is not None and a_key in state and b_key in state and state[a_key].ndim == 2:
        delta = (state[b_key].float() @ state[a_key].float()) * float(module.scaling[adapter])
        return delta.T if getattr(module, "fan_in_fan_out", False) else delta
    return module.get_delta_weight(adapter)


def plain_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The state dict with any LoRA deltas folded into their base weights and peft names removed.

    ``state``: a state dict gathered elsewhere (``accelerator.get_state_dict``, full tensors under
    FSDP / ZeRO-3); default the model's own. The deltas are computed from its LoRA factors.
    """
    from peft.tuners.lora import LoraLayer

    state = model.state_dict() if state is None else state
    deltas: dict[str, torch.Tensor] = {}
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer):
            delta = None
            for adapter in module.active_adapters:
                if adapter in module.lora_A:
                    d = _lora_delta(module, name, adapter, state)
                    delta = d if delta is None else delta + d
            if delta is not None:
                deltas[f"{name}.base_layer.weight"] = delta
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if "lora_" in key:
            continue
        value = (value.float() + deltas[key].float()).to(value.dtype) if key in deltas else value
        out[key.replace(_LORA_PREFIX, "").replace(".base_layer.", ".")] = value.detach().clone()
    return out


def summarize(counts: Mapping[str, int], model: nn.Module) -> str:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    parts = ", ".join(f"{k}={v:,}" for k, v in counts.items())
    return f"trainable {trainable:,} / {total:,} parameters ({parts})"
