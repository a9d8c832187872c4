"""Box and relevance losses for training the space decoder (torch twins of ``util.box_ops``).

Spatial losses count only frames inside the ground-truth span (SpaceVLLM, notes §2 S); their form
(L1 + GIoU with DETR's 5 / 2 weights) is the usual choice, assumed, not confirmed. The relevance BCE
over all sampled frames (inside = 1) is ours.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stvg_plugin.util.box_ops import torch_cxcywh_to_xyxy as cxcywh_to_xyxy
from stvg_plugin.util.box_ops import torch_generalized_iou as generalized_iou


def _per_example_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` ``[..., T]`` over the frames where ``mask`` is True (0 where none is)."""
    mask = mask.bool()
    total = torch.where(mask, values, torch.zeros((), dtype=values.dtype, device=values.device)).sum(dim=-1)
    return total / mask.sum(dim=-1).clamp(min=1).to(values.dtype)


def box_losses(pred_cxcywh: torch.Tensor, gt_cxcywh: torch.Tensor, in_span: torch.Tensor) -> dict[str, torch.Tensor]:
    """Mean L1 and ``1 - GIoU`` over frames with ``in_span`` True (normalised cxcywh, ``[..., T, 4]``).

    One value per example: the mean runs over the frame axis ``T`` only, so ``[B, T, 4]`` boxes give
    ``[B]`` losses, each equal to that example's loss computed alone. An example with no frame in span
    gets an exact zero that still carries a graph (so a trainer can always call ``backward``).
    """
    mask = in_span.bool()
    g = gt_cxcywh.to(pred_cxcywh.dtype)
    l1 = (pred_cxcywh - g).abs().sum(dim=-1)
    giou = generalized_iou(cxcywh_to_xyxy(pred_cxcywh), cxcywh_to_xyxy(g))
    return {"loss_l1": _per_example_mean(l1, mask), "loss_giou": _per_example_mean(1.0 - giou, mask)}


def centre_targets(gt_cxcywh: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
    """Bilinear split of each box centre over the 4 nearest token-cell centres, ``[..., rows * cols]``.

    The split's mean cell position is the centre itself (clamped to the outermost cell centres), so a
    head whose soft-argmax matches this distribution puts the centre exactly, not on a cell centre.
    """
    rows, cols = grid_hw
    flat = gt_cxcywh.reshape(-1, gt_cxcywh.shape[-1]).float()
    out = torch.zeros(flat.shape[0], rows, cols, device=flat.device)
    n = torch.arange(flat.shape[0], device=flat.device)
    gx = (flat[:, 0] * cols - 0.5).clamp(0, cols - 1)
    gy = (flat[:, 1] * rows - 0.5).clamp(0, rows - 1)
    x0, y0 = gx.floor().long(), gy.floor().long()
    x1, y1 = (x0 + 1).clamp(max=cols - 1), (y0 + 1).clamp(max=rows - 1)
    wx, wy = gx - x0, gy - y0
    for yy, xx, w in ((y0, x0, (1 - wy) * (1 - wx)), (y0, x1, (1 - wy) * wx), (y1, x0, wy * (1 - wx)), (y1, x1, wy * wx)):
        out.index_put_((n, yy, xx), w, accumulate=True)
    return out.reshape(*gt_cxcywh.shape[:-1], rows * cols)


def centre_loss(
    token_logits: torch.Tensor, grid_hw: tuple[int, int], gt_cxcywh: torch.Tensor, in_span: torch.Tensor
) -> torch.Tensor:
    """Cross-entropy of per-token scores ``[..., T, P]`` towards :func:`centre_targets`, in-span frames only
    (mean over the frame axis: one value per example, as :func:`box_losses`).

    Why: the reference head's box centre is a soft-argmax over these scores; through L1/GIoU alone the
    choice of *which* object gets a weak, late gradient (the centre moves by a fraction of a cell). A
    direct target on the tokens (CenterNet's idea) says it outright; a one-hot cell target instead
    would pin the centre to cell centres (half a cell of error on a coarse grid).
    """
    target = centre_targets(gt_cxcywh.to(token_logits.device), grid_hw)
    cross_entropy = -(target * token_logits.float().log_softmax(dim=-1)).sum(dim=-1)
    return _per_example_mean(cross_entropy, in_span.bool())


def relevance_loss(logits: torch.Tensor, in_span: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """BCE of per-frame relevance logits ``[..., T]`` against "frame inside the GT span" (0/1) or a soft
    target in [0, 1] (``relevance_target="coverage"``: the covered fraction of the frame's stretch); mean
    over ``T``, or over the ``valid`` frames."""
    target = in_span.to(logits.dtype)
    loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    if valid is None:
        return loss.mean(dim=-1)
    return _per_example_mean(loss, valid.bool())


#: the loss terms a training step sums, and their default weights: the one place they are set (the model
#: config's ``loss_*_weight`` fields and the trainer's ``loss_weights`` default to these)
LOSS_KEYS = ("lm", "l1", "giou", "relevance", "centre")
DEFAULT_LOSS_WEIGHTS: dict[str, float] = {"lm": 1.0, "l1": 5.0, "giou": 2.0, "relevance": 1.0, "centre": 0.0}


def grounding_losses(
    pred_cxcywh: torch.Tensor,
    relevance_logits: torch.Tensor,
    gt_cxcywh: torch.Tensor,
    box_mask: torch.Tensor,
    relevance_target: torch.Tensor,
    *,
    token_logits: torch.Tensor | None = None,
    grid_hw: tuple[int, int] | None = None,
    frame_mask: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The decoder's loss terms per example (``[B]`` each, keys ``l1``, ``giou``, ``relevance``, ``centre``).

    Box terms over the frames of ``box_mask`` (in span with a GT box), the relevance BCE over all frames
    against ``relevance_target`` (frame inside the GT span); ``centre`` is there when ``token_logits``
    (and their ``grid_hw``) are given. ``frame_mask`` ``[B, T]``: the real frames of examples padded to the
    batch's longest (the relevance mean runs over those only; padded frames are outside ``box_mask``).
    """
    parts = box_losses(pred_cxcywh, gt_cxcywh, box_mask)
    out = {"l1": parts["loss_l1"], "giou": parts["loss_giou"],
           "relevance": relevance_loss(relevance_logits, relevance_target.to(relevance_logits.device), frame_mask)}
    if token_logits is not None and grid_hw is not None:
        out["centre"] = centre_loss(token_logits, grid_hw, gt_cxcywh, box_mask)
    return out


def weighted_total(losses: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    """``sum_k weights[k] * losses[k]`` over :data:`LOSS_KEYS` present in ``losses``: the one place the terms are summed."""
    terms = [float(weights[k]) * losses[k] for k in LOSS_KEYS if k in losses]
    return sum(terms[1:], terms[0])
