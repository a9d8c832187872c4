"""The space decoder's direction-of-motion channels (``decoder_motion``, ``MotionFeatures``): their sign
says which way a pattern moves whatever its contrast (the colour of a synthetic object), a new module is
the identity, and the option round-trips through a checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stvg_plugin.models import SpaceVLLMForGrounding, build_tiny_model
from stvg_plugin.models.space_decoder import QueryGuidedSpaceDecoder, central_difference, motion_products


def _moving_blob(dx: float, dy: float, contrast: float = 1.0, t: int = 6, size: int = 12) -> torch.Tensor:
    """``[1, T, size, size, 1]``: a Gaussian blob whose centre moves ``(dx, dy)`` cells per frame."""
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64),
                            indexing="ij")
    frames = []
    for i in range(t):
        cx, cy = 4.0 + dx * i, 4.0 + dy * i
        frames.append(contrast * torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / 4.0))
    return torch.stack(frames)[None, ..., None]


def test_central_difference_matches_the_formula_and_repeats_edges():
    x = torch.tensor([1.0, 4.0, 9.0, 16.0])
    assert torch.equal(central_difference(x, 0), torch.tensor([4.0 - 1.0, 9.0 - 1.0, 16.0 - 4.0, 16.0 - 9.0]))
    assert torch.equal(central_difference(torch.ones(1, 3), 0), torch.zeros(1, 3))


@pytest.mark.parametrize("contrast", [1.0, -0.5])
def test_motion_products_sign_gives_direction_for_either_contrast(contrast):
    def summed(dx, dy):
        out = motion_products(_moving_blob(dx, dy, contrast))[0, 1:-1]  # frames with both neighbours
        return float(out[..., 0].sum()), float(out[..., 1].sum())

    right_x, right_y = summed(1.0, 0.0)
    left_x, left_y = summed(-1.0, 0.0)
    down_x, down_y = summed(0.0, 1.0)
    up_x, up_y = summed(0.0, -1.0)
    still_x, still_y = summed(0.0, 0.0)
    assert right_x < 0 < left_x and down_y < 0 < up_y
    # the other axis carries (next to) nothing; a still pattern nothing at all
    for along, across in ((right_x, right_y), (left_x, left_y), (down_y, down_x), (up_y, up_x)):
        assert abs(across) < 0.05 * abs(along)  # not exactly 0: the grid edge cuts the blob unevenly
    assert still_x == 0.0 and still_y == 0.0


def test_new_motion_module_is_the_identity():
    torch.manual_seed(0)
    dec = QueryGuidedSpaceDecoder(32, 16, 2, motion=True, temporal=True)
    dec._init_reference_head()
    visual, queries, text = torch.randn(2, 3, 16, 32), torch.randn(2, 3, 32), torch.randn(2, 5, 32)
    with_motion = dec(visual, queries, text)
    dec.motion = None
    without = dec(visual, queries, text)
    assert torch.equal(with_motion.boxes, without.boxes)
    assert torch.equal(with_motion.relevance_logits, without.relevance_logits)


def test_motion_gradient_reaches_the_zero_start_layer():
    torch.manual_seed(0)
    dec = QueryGuidedSpaceDecoder(32, 16, 2, motion=True)
    dec._init_reference_head()
    out = dec(torch.randn(1, 4, 16, 32), torch.randn(1, 4, 32), torch.randn(1, 5, 32))
    out.boxes.sum().backward()
    assert dec.motion.expand.weight.grad is not None and dec.motion.expand.weight.grad.abs().sum() > 0


def test_decoder_motion_round_trips_through_a_checkpoint(tmp_path: Path):
    model = build_tiny_model({"preset": "spacevllm_tiny", "decoder_motion": True})
    assert model.space_decoder.motion is not None
    assert torch.count_nonzero(model.space_decoder.motion.expand.weight) == 0
    with torch.no_grad():
        model.space_decoder.motion.expand.weight.normal_()
    model.save_pretrained(tmp_path / "m")
    loaded = SpaceVLLMForGrounding.from_pretrained(tmp_path / "m")
    assert loaded.config.decoder_motion
    assert torch.equal(loaded.space_decoder.motion.expand.weight, model.space_decoder.motion.expand.weight)
    assert build_tiny_model({"preset": "spacevllm_tiny"}).space_decoder.motion is None  # off by default
