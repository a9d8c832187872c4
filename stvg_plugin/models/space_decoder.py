"""Query-guided space decoder: per-frame box + relevance from the LLM's states (notes §2, §4).

SpaceVLLM (S): "dual cross-attention": a frame's visual tokens attend to the referring text, then
the frame's query token attends to those text-enhanced visual tokens; a light MLP regresses one
normalised ``(cx, cy, w, h)`` box per frame. Ours: the width/depth (unknown in the paper), a
pre-norm residual block with an FFN after each cross-attention, input projections from the LLM width
down to ``decoder_dim`` (keeps the decoder <1% of a 7B forward) and a per-frame relevance logit
read from the same query state (our addition; gives a second span estimate and a BCE target).
The box comes from a reference-point head by default (``box_head="reference"``: a 2-D position code on the
visual tokens, soft-argmax of per-token scores over the frame's token grid for the centre, DETR-style
refinement); the paper's plain MLP on the query state (``"mlp"``) did not learn from scratch on CPU.
The "no new trainable attention parameters" reading in the notes is contradictory and not followed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

DECODER_BOX_HEADS = ("reference", "mlp")


@dataclass
class SpaceDecoderOutput:
    boxes: torch.Tensor  # [B, T, 4] normalised cxcywh in (0, 1)
    relevance_logits: torch.Tensor  # [B, T]
    token_logits: torch.Tensor | None = None  # [B, T, P] the reference head's per-token scores (pre-softmax)
    grid_hw: tuple[int, int] | None = None  # (rows, cols) of those P tokens


def zero_start(layer: nn.Linear, rows: slice = slice(None)) -> nn.Linear:
    """Mark ``layer`` to start at zero (``rows`` of its weight and bias): a new path that begins as a no-op.

    The mark is applied by :func:`apply_zero_start` right after the layer's normal init (the model's
    ``_init_weights``), so it holds for random init and for weights a checkpoint lacks, never for loaded ones.
    """
    layer.zero_start_rows = rows
    return layer


def apply_zero_start(module: nn.Module) -> None:
    """Zero the marked rows of ``module`` (see :func:`zero_start`), except parameters loaded from a checkpoint."""
    rows = getattr(module, "zero_start_rows", None)
    if rows is None:
        return
    with torch.no_grad():
        for param in (module.weight, module.bias):
            if param is not None and not getattr(param, "_is_hf_initialized", False):
                param[rows].zero_()


class SpaceTimeMixer(nn.Module):
    """Residual depthwise 3x3x3 convolution over (time, rows, cols) of the frames' token grids + a pointwise mix.

    Why: the decoder otherwise sees one frame at a time, so a phrase such as "moving left" cannot be
    matched by any token (two identical shapes differ only in how they move). Depthwise keeps it cheap
    (27 weights per channel); the pointwise output starts at zero (:func:`zero_start`), so a new mixer is identity.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.conv = nn.Conv3d(dim, dim, kernel_size=3, padding=1, groups=dim)
        self.mix = zero_start(nn.Linear(dim, dim))

    def forward(self, v: torch.Tensor, b: int, t: int, rows: int, cols: int) -> torch.Tensor:
        """``v`` ``[B*T, rows*cols, dim]`` (frames of one video consecutive) -> same shape."""
        dim = v.shape[-1]
        x = self.norm(v).reshape(b, t, rows, cols, dim).permute(0, 4, 1, 2, 3)  # [B, dim, T, rows, cols]
        x = self.conv(x).permute(0, 2, 3, 4, 1).reshape(b * t, rows * cols, dim)
        return v + self.mix(nn.functional.gelu(x))


def central_difference(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``x[i+1] - x[i-1]`` along ``dim``, the edge values repeated (one-sided at the ends); 0 for length 1."""
    n = x.shape[dim]
    if n == 1:
        return torch.zeros_like(x)
    ahead = torch.cat([x.narrow(dim, 1, n - 1), x.narrow(dim, n - 1, 1)], dim=dim)
    behind = torch.cat([x.narrow(dim, 0, 1), x.narrow(dim, 0, n - 1)], dim=dim)
    return ahead - behind


def motion_products(a: torch.Tensor) -> torch.Tensor:
    """``a`` ``[B, T, rows, cols, k]`` -> ``[..., 2k]``: ``da/dt * da/dx`` then ``da/dt * da/dy`` per channel.

    Brightness constancy, ``a_t + u a_x = 0``, makes ``a_t * a_x = -u a_x^2``: negative where a pattern
    moves right (+x), positive where it moves left, zero where it stays, and the same for a pattern of the
    opposite sign (a blue square on grey as a red one). ``y`` grows downwards (row order).
    """
    dt = central_difference(a, 1)
    return torch.cat([dt * central_difference(a, 3), dt * central_difference(a, 2)], dim=-1)


class MotionFeatures(nn.Module):
    """Direction-of-motion channels per token (:func:`motion_products` of ``k`` learned channels), added back.

    Why: the :class:`SpaceTimeMixer` is linear before its GELU, and a linear space-time filter's answer
    to a pattern moving left flips sign with the pattern's contrast, so it cannot say "moving left" for
    every colour; motion-needed queries stayed at ~0.2 m_vIoU on the synthetic set (examples/learnability.md,
    session 5). Here ``a = W LN(v)`` (``channels`` learned projections), their motion products, projected
    back to the decoder width through a zero-initialised layer (a new module is the identity).
    """

    def __init__(self, dim: int, channels: int = 16):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.reduce = nn.Linear(dim, channels)
        self.expand = zero_start(nn.Linear(2 * channels, dim))

    def forward(self, v: torch.Tensor, b: int, t: int, rows: int, cols: int) -> torch.Tensor:
        """``v`` ``[B*T, rows*cols, dim]`` (frames of one video consecutive) -> same shape."""
        a = self.reduce(self.norm(v)).reshape(b, t, rows, cols, -1)
        return v + self.expand(motion_products(a).reshape(b * t, rows * cols, -1))


class PixelStem(nn.Module):
    """Features of each frame's pixels on the decoder's token grid, straight from the frames (``decoder_pixel_stem``).

    Why: the tiny backbone sees a 64-px frame through 8-px patches and a 32-wide SigLIP, and the
    learnability runs that missed most often put the box on the *other* object of a small target (a ~13-px
    shape spans one or two patches; examples/learnability.md, session 9). Two strided convolutions
    (4 px, then 2x2 of those) with a GELU between them read corners and edges inside each patch, which one
    linear patch embedding cannot; the result is pooled to the token grid when the strides do not land on
    it and added to the decoder's visual input through a zero-initialised layer (a new stem is a no-op).
    Frames: ``[T, 3, H, W]`` as the backbone's processor normalised them. Measured over four training
    seeds (session 10): mean m_vIoU +0.016, inside one run's noise, and the small targets' confusions did
    not fall; an option (``decoder_pixel_stem``), not in the learning preset.
    """

    def __init__(self, out_dim: int, channels: int = 32, width: int = 64):
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(3, channels, kernel_size=4, stride=4), nn.GELU(),
            nn.Conv2d(channels, width, kernel_size=2, stride=2), nn.GELU(),
        )
        self.out = zero_start(nn.Linear(width, out_dim))

    def forward(self, pixels: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
        """``pixels`` ``[T, 3, H, W]`` -> ``[T, rows*cols, out_dim]`` on the row-major token grid."""
        x = self.convs(pixels.to(self.out.weight.dtype))
        if tuple(x.shape[-2:]) != tuple(grid_hw):
            x = nn.functional.adaptive_avg_pool2d(x, grid_hw)
        return self.out(x.flatten(2).transpose(1, 2))


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
        x = x + self.attend(self.norm_q(x), self.norm_kv(context), context_pad)
        return x + self.ffn(self.norm_ffn(x))

    def attend(self, x: torch.Tensor, kv: torch.Tensor, pad: torch.Tensor | None = None) -> torch.Tensor:
        """``self.attn(x, kv, kv, key_padding_mask=pad)`` (no dropout), computed without its batch-first
        transposes, and for few queries over many keys without projecting the keys at all.

        Why: the decoder's query token of each frame attends to the frame's 64+ visual tokens; projecting
        all of them to keys and values (and nn.MultiheadAttention's copies to sequence-first layout and
        back) was the largest single cost of the demo's training step after the LLM. Per head
        ``q . (W_k v + b_k) = (W_k^T q) . v + const`` (the constant cancels in the softmax) and
        ``sum_j a_j (W_v v_j + b_v) = W_v (sum_j a_j v_j) + b_v``, so with ``Lq * heads <= dim`` the
        query moves into the keys' space instead (exact up to float rounding; the same parameters, so
        checkpoints are unchanged). ``x`` ``[N, Lq, E]``, ``kv`` ``[N, Lk, E]``, ``pad`` ``[N, Lk]`` True = pad.
        """
        attn = self.attn
        heads, dim = attn.num_heads, x.shape[-1]
        head_dim = dim // heads
        w_q, w_k, w_v = attn.in_proj_weight.chunk(3)
        b_q, b_k, b_v = attn.in_proj_bias.chunk(3)
        q = nn.functional.linear(x, w_q, b_q).unflatten(-1, (heads, head_dim)).transpose(1, 2)  # [N, h, Lq, d]
        keep = None if pad is None else ~pad[:, None, None, :]  # [N, 1, 1, Lk] True = attend
        if x.shape[1] * heads <= dim:
            n, lq = x.shape[:2]
            # heads and queries share one axis, so the keys are read as they lie (a broadcast over a head
            # axis would copy them once per head)
            q_in_key_space = (q @ w_k.reshape(heads, head_dim, dim)).reshape(n, heads * lq, dim)
            scores = (q_in_key_space @ kv.transpose(1, 2)) / math.sqrt(head_dim)  # [N, h*Lq, Lk]
            if keep is not None:
                scores = scores.masked_fill(~keep[:, 0], float("-inf"))
            pooled = (scores.softmax(dim=-1) @ kv).reshape(n, heads, lq, dim)
            out = pooled @ w_v.reshape(heads, head_dim, dim).transpose(-1, -2) + b_v.reshape(heads, 1, head_dim)
        else:
            k = nn.functional.linear(kv, w_k, b_k).unflatten(-1, (heads, head_dim)).transpose(1, 2)
            v = nn.functional.linear(kv, w_v, b_v).unflatten(-1, (heads, head_dim)).transpose(1, 2)
            out = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=keep)
        return attn.out_proj(out.transpose(1, 2).flatten(2))


def grid_shape(tokens: int) -> tuple[int, int]:
    """``(rows, cols)`` of a frame's token grid: the squarest factorisation (a square grid when ``P = g^2``)."""
    rows = max(1, math.isqrt(tokens))
    while tokens % rows:
        rows -= 1
    return rows, tokens // rows


def grid_centres(rows: int, cols: int, device: torch.device | None = None) -> torch.Tensor:
    """Normalised ``(x, y)`` centres of a row-major token grid, ``[rows * cols, 2]``."""
    ys = (torch.arange(rows, device=device, dtype=torch.float32) + 0.5) / rows
    xs = (torch.arange(cols, device=device, dtype=torch.float32) + 0.5) / cols
    return torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).reshape(-1, 2)


def sincos_position_embedding(rows: int, cols: int, dim: int, device: torch.device | None = None) -> torch.Tensor:
    """Fixed 2-D sin-cos embedding (MAE/ViT style) of the token grid, ``[rows * cols, dim]``."""
    centres = grid_centres(rows, cols, device)  # (x, y) in (0, 1)
    quarter = dim // 4
    freqs = 2.0 ** torch.arange(quarter, device=device, dtype=torch.float32) * math.pi  # 1 .. 2^(k-1) cycles
    parts = []
    for axis in (0, 1):
        angle = centres[:, axis : axis + 1] * freqs
        parts += [angle.sin(), angle.cos()]
    emb = torch.cat(parts, dim=-1)
    return nn.functional.pad(emb, (0, dim - emb.shape[-1]))


class QueryGuidedSpaceDecoder(nn.Module):
    """``V_i' = CrossAttn(V_i <- text)``; ``q_i' = CrossAttn(q_i <- V_i')``; box head, linear -> relevance.

    ``box_head``:

    * ``reference`` (default): a fixed 2-D sin-cos position embedding of each token's grid cell is added
      to the visual tokens; per-token scores from (``V_i'`` token, ``q_i'``) -> softmax over the frame's
      tokens -> box centre = attention-weighted mean of the token-cell centres (soft-argmax) refined by a
      predicted offset (in logit space); width/height from an MLP over the attention-pooled tokens and
      ``q_i'``. Gives the decoder the spatial inductive bias it needs to learn from scratch.
      ``text_match`` adds a text-conditioned linear score per token, ``v_j' . W mean(text)`` (a bag of
      the query's words: one direction per attribute, so the object matching all of them scores
      highest), to the per-token scores, and its best value over the frame to the relevance logit.
      Softmax cross-attention alone cannot say *how well* a token matches the text (its weights
      always sum to one). Reference head only. Measured on the synthetic data: alone, the box loss
      leaves the mean-box level sooner but the held-out scores did not move; together with the
      centre target below it is part of the best setting (examples/learnability.md, session 3).
      ``temporal`` adds a :class:`SpaceTimeMixer` over the frames' token grids before the text
      cross-attention (reference head only), so motion phrases can be matched by a token.
      ``motion`` adds :class:`MotionFeatures` (direction-of-motion channels, whatever the colour) before
      the position code (reference head only).
      ``pixel_stem`` holds a :class:`PixelStem`, which the model runs on the frames and adds to the
      visual input it passes in (the decoder's own forward does not call it: a cached video keeps the sum).
      The per-token scores are returned (``token_logits``) so a trainer can supervise them directly
      (``loss_centre_weight``: cross-entropy towards the GT box centre split over its nearest cells).
    * ``mlp``: the plain head (MLP on ``q_i'`` -> sigmoid cxcywh, no position code): DETR's slow start,
      its boxes did not beat the mean box when trained from scratch on CPU (examples/learnability.md).
    """

    def __init__(
        self,
        llm_dim: int,
        dim: int = 256,
        heads: int = 8,
        layers: int = 1,
        mlp_ratio: int = 2,
        box_head: str = "reference",
        text_match: bool = False,
        temporal: bool = False,
        text_embeddings: bool = False,
        motion: bool = False,
        pixel_stem: bool = False,
    ):
        super().__init__()
        if box_head not in DECODER_BOX_HEADS:
            raise ValueError(f"box_head must be one of {DECODER_BOX_HEADS}, got {box_head!r}")
        self.box_head_kind = box_head
        self.visual_proj = nn.Linear(llm_dim, dim)
        self.text_proj = nn.Linear(llm_dim, dim)
        # the query tokens' input embeddings (the words, free of the video the LLM states attend to),
        # normalised (embeddings start ~50x smaller than the final-normed states) and projected apart
        self.text_embed_proj = nn.Sequential(nn.LayerNorm(llm_dim), nn.Linear(llm_dim, dim)) if text_embeddings else None
        self.query_proj = nn.Linear(llm_dim, dim)
        self.visual_from_text = nn.ModuleList(CrossAttentionBlock(dim, heads, mlp_ratio) for _ in range(layers))
        self.query_from_visual = nn.ModuleList(CrossAttentionBlock(dim, heads, mlp_ratio) for _ in range(layers))
        self.out_norm = nn.LayerNorm(dim)
        self.relevance_head = nn.Linear(dim, 1)
        if box_head == "mlp":
            self.box_head = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, 4))
        else:
            self.visual_norm = nn.LayerNorm(dim)
            self.score_query = nn.Linear(dim, dim)
            self.score_mlp = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, 1))
            # [attention-pooled tokens, q] -> (dx, dy) centre offset (logit space) + (w, h) logits
            self.box_head = nn.Sequential(nn.Linear(2 * dim, dim), nn.GELU(), nn.Linear(dim, 4))
            zero_start(self.box_head[-1], rows=slice(0, 2))  # start from the soft-argmax centre: zero offset
        self.text_match = bool(text_match) and box_head == "reference"
        self.temporal = SpaceTimeMixer(dim) if temporal and box_head == "reference" else None
        self.motion = MotionFeatures(dim) if motion and box_head == "reference" else None
        # the model adds its output to the visual input it hands over (in the LLM's width): see PixelStem
        self.pixel_stem = PixelStem(llm_dim) if pixel_stem else None
        if self.text_match:
            # token . W(mean text): a text-conditioned linear score per visual token (zero-initialised)
            self.text_key = zero_start(nn.Linear(dim, dim))
            self.relevance_from_match = zero_start(nn.Linear(1, 1))

    def _init_reference_head(self) -> None:
        """Zero the layers marked to start at zero (see :func:`zero_start`); the model's ``_init_weights``
        does this per layer after its normal init, this method does it for a decoder built on its own."""
        for module in self.modules():
            apply_zero_start(module)

    def forward(
        self,
        visual: torch.Tensor,
        queries: torch.Tensor,
        text: torch.Tensor,
        text_pad: torch.Tensor | None = None,
        grid_hw: tuple[int, int] | None = None,
        text_embeds: torch.Tensor | None = None,
    ) -> SpaceDecoderOutput:
        """``visual`` [B, T, P, Dllm], ``queries`` [B, T, Dllm], ``text`` [B, L, Dllm] (``text_pad`` [B, L] True = pad).

        ``text_embeds`` [B, L, Dllm]: the input embeddings of the same text tokens; required when the
        decoder was built with ``text_embeddings`` (added to the projected text states), ignored otherwise.

        ``grid_hw``: the ``(rows, cols)`` of a frame's row-major token grid (default: :func:`grid_shape` of P).

        Runs in the decoder's own parameter dtype (fp32: the model keeps this module in fp32, see
        ``_keep_in_fp32_modules``) with autocast off, whatever the LLM's dtype or an enclosing bf16
        autocast: bf16 boxes would step by ~7.5 px on a 1920-px frame, and the decoder is <1% of the
        FLOPs. Boxes and relevance logits therefore come back in fp32.
        """
        dtype = self.visual_proj.weight.dtype
        visual, queries, text = visual.to(dtype), queries.to(dtype), text.to(dtype)
        if self.text_embed_proj is not None:
            if text_embeds is None:
                raise ValueError("this space decoder reads the text's input embeddings too: pass text_embeds")
            text_embeds = text_embeds.to(dtype)
        if not torch.amp.is_autocast_available(visual.device.type):  # the meta device (FLOP counts)
            return self._forward(visual, queries, text, text_pad, grid_hw, text_embeds)
        with torch.autocast(visual.device.type, enabled=False):
            return self._forward(visual, queries, text, text_pad, grid_hw, text_embeds)

    def _forward(
        self,
        visual: torch.Tensor,
        queries: torch.Tensor,
        text: torch.Tensor,
        text_pad: torch.Tensor | None,
        grid_hw: tuple[int, int] | None,
        text_embeds: torch.Tensor | None = None,
    ) -> SpaceDecoderOutput:
        b, t, p, _ = visual.shape
        v = self.visual_proj(visual).reshape(b * t, p, -1)
        reference = self.box_head_kind == "reference"
        if reference:
            rows, cols = grid_hw if grid_hw is not None else grid_shape(p)
            if rows * cols != p:
                raise ValueError(f"grid_hw {grid_hw} does not hold {p} tokens")
            if self.motion is not None:  # before the position code: its spatial differences are constant
                v = self.motion(v, b, t, rows, cols)
            v = v + sincos_position_embedding(rows, cols, v.shape[-1], v.device).to(v.dtype)
            if self.temporal is not None:
                v = self.temporal(v, b, t, rows, cols)
        q = self.query_proj(queries).reshape(b * t, 1, -1)
        txt = self.text_proj(text)
        if self.text_embed_proj is not None:
            txt = txt + self.text_embed_proj(text_embeds)
        if txt.shape[0] != b:  # one text for all the videos (a batch of 1 broadcasts)
            txt = txt.expand(b, -1, -1)
            text_pad = None if text_pad is None else text_pad.expand(b, -1)
        for v_block, q_block in zip(self.visual_from_text, self.query_from_visual):
            # every visual token attends to its video's text on its own, so one call per video over all
            # its frames' tokens is the per-frame call exactly, without the text's keys and values
            # projected once per frame (the batched training step: ~T x less of that work)
            v = v_block(v.reshape(b, t * p, -1), txt, text_pad).reshape(b * t, p, -1)
            q = q_block(q, v)
        q = self.out_norm(q)  # [BT, 1, dim]
        relevance = self.relevance_head(q).reshape(b, t)
        if not reference:
            return SpaceDecoderOutput(boxes=self.box_head(q).sigmoid().reshape(b, t, 4), relevance_logits=relevance)
        vn = self.visual_norm(v)
        scores = self.score_mlp(vn + self.score_query(q)).squeeze(-1)  # [BT, P]
        if self.text_match:
            if text_pad is None:
                text_mean = txt.mean(dim=1)
            else:
                keep = (~text_pad).unsqueeze(-1).to(txt.dtype)
                text_mean = (txt * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1.0)
            key = self.text_key(text_mean).unsqueeze(-1)  # [B, dim, 1]: one per video
            match = (vn.reshape(b, t * p, -1) @ key).reshape(b * t, p) / math.sqrt(vn.shape[-1])  # [BT, P]
            scores = scores + match
            best = match.max(dim=-1, keepdim=True).values  # "some token of this frame matches the text"
            relevance = relevance + self.relevance_from_match(best).reshape(b, t)
        attn = scores.float().softmax(dim=-1)
        centre = attn @ grid_centres(rows, cols, v.device)  # [BT, 2] soft-argmax (x, y)
        pooled = (attn.to(vn.dtype)[:, None] @ vn).squeeze(1)  # [BT, dim]
        raw = self.box_head(torch.cat([pooled, q.squeeze(1)], dim=-1)).float()  # [BT, 4]
        centre = centre.clamp(1e-4, 1 - 1e-4)
        cxcy = (torch.logit(centre) + raw[:, :2]).sigmoid()
        boxes = torch.cat([cxcy, raw[:, 2:].sigmoid()], dim=-1).to(v.dtype)
        return SpaceDecoderOutput(
            boxes=boxes.reshape(b, t, 4),
            relevance_logits=relevance,
            token_logits=scores.reshape(b, t, p),
            grid_hw=(rows, cols),
        )
