"""Query-guided space decoder: per-frame box + relevance from the LLM's states (notes §2, §4).

SpaceVLLM (S): "dual cross-attention": a frame's visual tokens attend to the referring text, then
the frame's query token attends to those text-enhanced visual tokens; a light MLP regresses one
normalised ``(cx, cy, w, h)`` box per frame. Ours: the width/depth (unknown in the paper), a
pre-norm residual block with an FFN after each cross-attention, input projections from the LLM width
down to ``decoder_dim`` (keeps the decoder <1% of a 7B forward) and a per-frame relevance logit
read from the same query state (our addition; gives a second span estimate and a BCE target).
The "no new trainable attention parameters" reading in the notes is contradictory and not followed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class SpaceDecoderOutput:
    boxes: torch.Tensor  # [B, T, 4] normalised cxcywh in (0, 1)
    relevance_logits: torch.Tensor  # [B, T]


class CrossAttentionBlock(nn.Module):
    """Pre-norm cross-attention + FFN, both residual (torch's ``MultiheadAttention``)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int):
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_ffn = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, dim * mlp_ratio), nn.GELU(), nn.Linear(dim * mlp_ratio, dim))

    def forward(self, x: torch.Tensor, context: torch.Tensor, context_pad: torch.Tensor | None = None) -> torch.Tensor:
        kv = self.norm_kv(context)
        x = x + self.attn(self.norm_q(x), kv, kv, key_padding_mask=context_pad, need_weights=False)[0]
        return x + self.ffn(self.norm_ffn(x))


class QueryGuidedSpaceDecoder(nn.Module):
    """``V_i' = CrossAttn(V_i <- text)``; ``q_i' = CrossAttn(q_i <- V_i')``; MLP -> box, linear -> relevance."""

    def __init__(self, llm_dim: int, dim: int = 256, heads: int = 8, layers: int = 1, mlp_ratio: int = 2):
        super().__init__()
        self.visual_proj = nn.Linear(llm_dim, dim)
        self.text_proj = nn.Linear(llm_dim, dim)
        self.query_proj = nn.Linear(llm_dim, dim)
        self.visual_from_text = nn.ModuleList(CrossAttentionBlock(dim, heads, mlp_ratio) for _ in range(layers))
        self.query_from_visual = nn.ModuleList(CrossAttentionBlock(dim, heads, mlp_ratio) for _ in range(layers))
        self.out_norm = nn.LayerNorm(dim)
        self.box_head = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, 4))
        self.relevance_head = nn.Linear(dim, 1)

    def forward(
        self,
        visual: torch.Tensor,
        queries: torch.Tensor,
        text: torch.Tensor,
        text_pad: torch.Tensor | None = None,
    ) -> SpaceDecoderOutput:
        """``visual`` [B, T, P, Dllm], ``queries`` [B, T, Dllm], ``text`` [B, L, Dllm] (``text_pad`` [B, L] True = pad)."""
        b, t, p, _ = visual.shape
        v = self.visual_proj(visual).reshape(b * t, p, -1)
        q = self.query_proj(queries).reshape(b * t, 1, -1)
        txt = self.text_proj(text)
        txt = txt[:, None].expand(b, t, *txt.shape[1:]).reshape(b * t, txt.shape[1], -1)
        pad = None if text_pad is None else text_pad[:, None].expand(b, t, -1).reshape(b * t, -1)
        for v_block, q_block in zip(self.visual_from_text, self.query_from_visual):
            v = v_block(v, txt, pad)
            q = q_block(q, v)
        q = self.out_norm(q).reshape(b, t, -1)
        boxes = self.box_head(q).sigmoid()
        relevance = self.relevance_head(q).squeeze(-1)
        return SpaceDecoderOutput(boxes=boxes, relevance_logits=relevance)
