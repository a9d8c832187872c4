"""Registry of backbone adapters: adding a backbone = one adapter file + one entry here."""

from __future__ import annotations

from stvg_plugin.models.backbones.base import QUERY, TEXT, VISUAL, BackboneAdapter, FrameFeatures
from stvg_plugin.models.backbones.llava_onevision import LlavaOnevisionAdapter
from stvg_plugin.models.backbones.qwen2_5_vl import Qwen25VLAdapter

BACKBONES: dict[str, type[BackboneAdapter]] = {
    LlavaOnevisionAdapter.name: LlavaOnevisionAdapter,
    Qwen25VLAdapter.name: Qwen25VLAdapter,
}


def get_backbone(name: str) -> type[BackboneAdapter]:
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; known: {sorted(BACKBONES)}") from None


__all__ = [
    "BACKBONES",
    "BackboneAdapter",
    "FrameFeatures",
    "LlavaOnevisionAdapter",
    "Qwen25VLAdapter",
    "get_backbone",
    "TEXT",
    "VISUAL",
    "QUERY",
]
