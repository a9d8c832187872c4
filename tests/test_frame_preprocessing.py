"""The LLaVA-OneVision adapter's vectorised frame preprocessing equals transformers' PIL SigLIP processor
bit for bit where it applies (frames already at the processor's size), and defers to it elsewhere."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from stvg_plugin.models.backbones.llava_onevision import LlavaOnevisionAdapter, pixels_without_resize


def _frames(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(5, h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("size", [(64, 64), (32, 48)])
def test_fast_path_equals_the_processor_bit_for_bit(size):
    processor = LlavaOnevisionAdapter.build_frame_processor(size)
    frames = _frames(*size)
    frames[0] = 0
    frames[1] = 255  # the ends of the range
    fast = pixels_without_resize(processor, frames)
    assert fast is not None
    reference = processor(images=list(frames), return_tensors="pt")["pixel_values"]
    assert fast.dtype == reference.dtype and fast.shape == reference.shape
    assert torch.equal(fast, reference)


def test_adapter_output_is_unchanged_with_and_without_the_fast_path():
    processor = LlavaOnevisionAdapter.build_frame_processor((64, 64))
    frames = _frames(64, 64, seed=1)
    got = LlavaOnevisionAdapter.preprocess_frames(None, processor, frames)["pixel_values_videos"]
    reference = processor(images=list(frames), return_tensors="pt")["pixel_values"][None]
    assert torch.equal(got, reference)


def test_other_sizes_and_settings_go_through_the_processor(tmp_path: Path):
    processor = LlavaOnevisionAdapter.build_frame_processor((64, 64))
    assert pixels_without_resize(processor, _frames(120, 160)) is None  # needs a real resize
    assert pixels_without_resize(processor, _frames(64, 64).astype(np.float32)) is None
    processor.do_normalize = False
    assert pixels_without_resize(processor, _frames(64, 64)) is None
    # the adapter still answers (through the processor) for a frame size that needs resizing
    processor = LlavaOnevisionAdapter.build_frame_processor((64, 64))
    frames = _frames(120, 160)
    got = LlavaOnevisionAdapter.preprocess_frames(None, processor, frames)["pixel_values_videos"]
    assert got.shape == (1, 5, 3, 64, 64)
    assert torch.equal(got, processor(images=list(frames), return_tensors="pt")["pixel_values"][None])
    # a processor saved and loaded from a checkpoint folder takes the fast path too
    processor.save_pretrained(str(tmp_path))
    loaded = LlavaOnevisionAdapter.load_frame_processor(tmp_path, None)
    frames = _frames(64, 64, seed=2)
    assert torch.equal(pixels_without_resize(loaded, frames),
                       loaded(images=list(frames), return_tensors="pt")["pixel_values"])


def test_processor_remembers_token_ids_exactly_and_boundedly():
    from stvg_plugin.models import build_tiny_model

    processor = build_tiny_model("spacevllm_tiny").processor
    fresh = lambda text: list(processor.tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    first = processor._ids("Frame 3 at 0.40 s:")
    assert first == fresh("Frame 3 at 0.40 s:")
    first.append(-1)  # a caller's list is its own: the remembered ids stay as they were
    assert processor._ids("Frame 3 at 0.40 s:") == fresh("Frame 3 at 0.40 s:")
    assert processor._ids("") == []
    processor.ID_CACHE_SIZE = 4
    for i in range(10):
        assert processor._ids(f"{i}:0.{i}") == fresh(f"{i}:0.{i}")
        assert len(processor._id_cache) <= 4
