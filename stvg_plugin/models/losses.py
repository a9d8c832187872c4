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


def box_losses(pred_cxcywh: torch.Tensor, gt_cxcywh: torch.Tensor, in_span: torch.Tensor) -> dict[str, torch.Tensor]:
    """Mean L1 and ``1 - GIoU`` over frames with ``in_span`` True (normalised cxcywh, ``[..., T, 4]``).

    With no frame in span both losses are an exact zero that still carries a graph (so a trainer can
    always call ``backward``).
    """
    mask = in_span.bool()
    count = mask.sum()
    if int(count) == 0:
        zero = pred_cxcywh.sum() * 0.0
        return {"loss_l1": zero, "loss_giou": zero}
    p, g = pred_cxcywh[mask], gt_cxcywh[mask].to(pred_cxcywh.dtype)
    l1 = F.l1_loss(p, g, reduction="sum") / count
    giou = generalized_iou(cxcywh_to_xyxy(p), cxcywh_to_xyxy(g))
    return {"loss_l1": l1, "loss_giou": (1.0 - giou).sum() / count}


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
    """Cross-entropy of per-token scores ``[..., T, P]`` towards :func:`centre_targets`, in-span frames only.

    Why: the reference head's box centre is a soft-argmax over these scores; through L1/GIoU alone the
    choice of *which* object gets a weak, late gradient (the centre moves by a fraction of a cell). A
    direct target on the tokens (CenterNet's idea) says it outright; a one-hot cell target instead
    would pin the centre to cell centres (half a cell of error on a coarse grid).
    """
    mask = in_span.bool()
    if int(mask.sum()) == 0:
        return token_logits.sum() * 0.0
    target = centre_targets(gt_cxcywh[mask].to(token_logits.device), grid_hw)
    return -(target * token_logits[mask].float().log_softmax(dim=-1)).sum(dim=-1).mean()


def relevance_loss(logits: torch.Tensor, in_span: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """BCE of per-frame relevance logits against "frame inside the GT span"."""
    target = in_span.to(logits.dtype)
    loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    if valid is None:
        return loss.mean()
    valid = valid.to(logits.dtype)
    return (loss * valid).sum() / valid.sum().clamp(min=1.0)


def grounding_loss(
    pred_cxcywh: torch.Tensor,
    relevance_logits: torch.Tensor,
    gt_cxcywh: torch.Tensor,
    in_span: torch.Tensor,
    *,
    l1_weight: float = 5.0,
    giou_weight: float = 2.0,
    relevance_weight: float = 1.0,
    centre_weight: float = 0.0,
    token_logits: torch.Tensor | None = None,
    grid_hw: tuple[int, int] | None = None,
) -> dict[str, torch.Tensor]:
    """All decoder losses and their weighted sum under ``loss`` (the LM loss is added by the caller).

    ``loss_centre`` is there when ``token_logits`` (and their ``grid_hw``) are given.
    """
    parts = box_losses(pred_cxcywh, gt_cxcywh, in_span)
    parts["loss_relevance"] = relevance_loss(relevance_logits, in_span)
    parts["loss"] = (
        l1_weight * parts["loss_l1"] + giou_weight * parts["loss_giou"] + relevance_weight * parts["loss_relevance"]
    )
    if token_logits is not None and grid_hw is not None:
        parts["loss_centre"] = centre_loss(token_logits, grid_hw, gt_cxcywh, in_span)
        parts["loss"] = parts["loss"] + centre_weight * parts["loss_centre"]
    return parts
