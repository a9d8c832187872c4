"""SpaceVLLM-style spatio-temporal grounding model (our implementation; no official code exists).

What is SpaceVLLM's (notes/model.md; P = paper/README, S = secondary note, likely right):
  * (P) interleaved **spatio-temporal aware queries** and a **query-guided space decoder**;
  * (S) one query token per sampled frame, right after that frame's visual tokens; the referring
    text comes after the video; the LLM writes the time span as text in seconds; the decoder reads
    the query tokens' last-layer states, lets the frame's visual tokens attend to the text, then the
    query attend to those; an MLP regresses a normalised (cx, cy, w, h) box per frame;
  * (S) boxes are supervised only inside the ground-truth span.

What is ours (unconfirmed choices, all switchable in :class:`SpaceVLLMConfig`):
  * backbone adapters over transformers' own VLM classes (LLaVA-OneVision first, Qwen2.5-VL second);
  * ``st_query_embed`` = ``Embedding(max_frames + 1, d)``: a distinct learned vector per frame slot
    (row ``max_frames`` reserved for single-image REC), spliced at ``inputs_embeds`` level;
  * frame timestamps written in the prompt before every frame (``frame_template``);
  * the decoder's visual input = the LLM's last-layer states at the visual positions
    (``decoder_visual_source="hidden"``; ``"projected"`` = the projector output; ``"patches"`` = the
    projector output before LLaVA's 2x2 pooling, a finer grid for the boxes) and its text input
    = the last-layer states of the referring-text tokens only;
  * a per-frame relevance logit from the decoder's query state: a second span estimate
    (``span_source`` = text | relevance | combined) and a BCE target;
  * ``box_head="text"``: ablation where the LLM writes one normalised box per sampled frame;
  * greedy decoding with our own short loop (so the cached prefix and M-RoPE positions stay under
    our control); "encode once, ground many": the queries of one video run as one batch against the
    prefix KV cache (expanded to the batch, never copied per query; instructions right-padded and
    the pads hidden by the attention mask; finished rows dropped). One query = a batch of one.

Reading order: ``VideoPrefix`` -> ``SpaceVLLMForGrounding.__init__`` -> ``_prefix_embeddings`` ->
``encode_video`` -> ``answer_queries`` (the grounder builds predictions from its tensors) -> ``forward``
(training) -> save / load.
"""

from __future__ import annotations

import copy
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.cache_utils import DynamicLayer
from transformers.utils import ModelOutput

from stvg_plugin.data import Span
from stvg_plugin.models.backbones import QUERY, VISUAL, BackboneAdapter, FrameFeatures, get_backbone
from stvg_plugin.models.checkpoint import UnsafeCheckpointError, check_checkpoint_files, check_remote_code
from stvg_plugin.models.configuration_spacevllm import SpaceVLLMConfig
from stvg_plugin.models.decoding import VideoGeometry
from stvg_plugin.models.losses import LOSS_KEYS, grounding_losses, weighted_total
from stvg_plugin.models.processing_spacevllm import InstructionTokens, PrefixLayout, SpaceVLLMProcessor
from stvg_plugin.models.space_decoder import QueryGuidedSpaceDecoder, apply_zero_start
from stvg_plugin.util import box_ops


@dataclass
class VideoPrefix:
    """Everything a query needs from one encoded video; independent of any query text."""

    cache: Any  # transformers DynamicCache of the prefix
    length: int
    next_position: int
    query_states: torch.Tensor  # [T, D] last-layer states at the query tokens
    visual_states: torch.Tensor  # [T, P, D] decoder visual input
    geometry: VideoGeometry
    layout: PrefixLayout
    position_dims: int = 1  # 3 for Qwen2.5-VL's M-RoPE (position ids [3, B, n])
    visual_grid: tuple[int, int] | None = None  # row-major (rows, cols) of visual_states' P tokens


@dataclass
class GroundingInputs:
    """One training/inference example before the model (built by :meth:`prepare_inputs`)."""

    pixel_inputs: dict[str, torch.Tensor]
    timestamps: np.ndarray
    instruction: InstructionTokens
    answer_ids: torch.Tensor | None = None
    gt_boxes: torch.Tensor | None = None  # [T, 4] normalised cxcywh at the sampled frames
    in_span: torch.Tensor | None = None  # [T] bool, sampled frame inside the GT span with a GT box (box losses)
    geometry: VideoGeometry | None = None
    #: [T] float, sampled frame inside the GT span (relevance target; ``None``: ``in_span``). Differs from
    #: ``in_span`` where a span frame has no box, and for ``tvg`` samples (span, no boxes)
    relevance_target: torch.Tensor | None = None


@dataclass
class PrefixAnswers(ModelOutput):
    """The model's answers to queries against one cached prefix (:meth:`SpaceVLLMForGrounding.answer_queries`):
    tensors and token ids only; the :class:`~stvg_plugin.models.grounder.Grounder` builds the predictions."""

    answer_ids: list[list[int]] | None = None  # greedy tokens per query (up to and without eos)
    boxes: torch.Tensor | None = None  # [B, T, 4] the space decoder's normalised cxcywh, fp32 on the CPU
    relevance_logits: torch.Tensor | None = None  # [B, T] fp32 on the CPU


@dataclass
class SpaceVLLMOutput(ModelOutput):
    """The training forward's tensors. Examples with fewer frames than the longest (a one-frame ``rec``
    sample beside 16-frame videos) are padded at the end of ``T``; ``frame_mask`` marks the real frames."""

    loss: torch.Tensor | None = None  # the weighted sum of the terms, mean over the examples
    loss_lm: torch.Tensor | None = None  # mean over the examples with an answer
    losses: dict[str, torch.Tensor] | None = None  # "loss_<term>": each term's mean over the examples
    example_losses: dict[str, torch.Tensor] | None = None  # "<term>" and "total": [B] per example
    pred_boxes: torch.Tensor | None = None  # [B, T, 4] normalised cxcywh
    relevance_logits: torch.Tensor | None = None  # [B, T]
    answer_logits: list[torch.Tensor] | None = field(default=None)
    token_logits: torch.Tensor | None = None  # [B, T, P] reference head's per-token scores
    token_grid: tuple[int, int] | None = None  # their (rows, cols)
    frame_mask: torch.Tensor | None = None  # [B, T] bool: real (not padded) frames


def _pad_frames(x: torch.Tensor, frames: int) -> torch.Tensor:
    """``x`` ``[T, ...]`` zero-padded at the end to ``frames`` rows (the batch's longest video)."""
    if x.shape[0] == frames:
        return x
    return torch.cat([x, x.new_zeros(frames - x.shape[0], *x.shape[1:])])


class SpaceVLLMPreTrainedModel(PreTrainedModel):
    config: SpaceVLLMConfig
    config_class = SpaceVLLMConfig
    base_model_prefix = "spacevllm"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    # the instance adds the backbone's LLM decoder layer and vision encoder layer classes (see __init__)
    _no_split_modules = ["QueryGuidedSpaceDecoder"]
    # the space decoder stays fp32 whatever dtype the checkpoint is loaded in (boxes need the precision)
    _keep_in_fp32_modules_strict = ["space_decoder"]

    def _init_weights(self, module: nn.Module) -> None:
        """transformers' init, then the space decoder's starting point: the layers it marks start at zero
        (zero box offset, no text-match term, identity space-time mixer; :func:`space_decoder.zero_start`).

        Per layer, because transformers skips a parameterless module (the decoder itself) in a model
        that is not part of the library."""
        super()._init_weights(module)
        apply_zero_start(module)


class SpaceVLLMForGrounding(SpaceVLLMPreTrainedModel):
    def __init__(self, config: SpaceVLLMConfig, backbone: BackboneAdapter | None = None):
        super().__init__(config)
        adapter_cls = get_backbone(config.backbone)
        self.backbone = backbone if backbone is not None else adapter_cls.from_config(config.vlm_config)
        self.backbone.configure(config)
        if config.decoder_pixel_stem and not self.backbone.can_hand_over_pixels:
            raise ValueError(f"decoder_pixel_stem reads the frames' pixels; the {config.backbone} backbone hands "
                             "over none (turn decoder_pixel_stem off)")
        d = self.backbone.hidden_size
        self.st_query_embed = nn.Embedding(config.max_frames + 1, d)
        self.space_decoder = QueryGuidedSpaceDecoder(
            d,
            config.decoder_dim,
            config.decoder_heads,
            config.decoder_layers,
            config.decoder_mlp_ratio,
            box_head=config.decoder_box_head,
            text_match=config.decoder_text_match,
            temporal=config.decoder_temporal,
            motion=config.decoder_motion,
            pixel_stem=config.decoder_pixel_stem,
            text_embeddings=config.decoder_text_source == "hidden+embedding",
        )
        self.processor: SpaceVLLMProcessor | None = None
        self.post_init()
        self._no_split_modules = self.wrap_class_names()

    def wrap_class_names(self) -> list[str]:
        """Module classes FSDP auto-wrap (and ``device_map`` splitting) must keep whole, one unit each.

        The backbone adapter is a plain ``nn.Module``, so transformers' ``post_init`` never sees the
        wrapped VLM's own list; it is read here: the LLM decoder layer (``Qwen2DecoderLayer`` /
        ``Qwen2_5_VLDecoderLayer``), the vision encoder layer (``SiglipEncoderLayer`` /
        ``Qwen2_5_VLVisionBlock``) and the space decoder. Names transformers lists for classes this
        model does not contain (SigLIP's text embeddings) are dropped: accelerate's
        ``transformer_based_wrap`` refuses a name it cannot find in the model.
        """
        present = {type(m).__name__ for m in self.modules()}
        names = {"QueryGuidedSpaceDecoder", *(getattr(self.backbone.vlm, "_no_split_modules", None) or ())}
        return sorted(n for n in names if n in present)

    def cast_for_compute(self, dtype: torch.dtype) -> SpaceVLLMForGrounding:
        """``self.to(dtype)`` except the space decoder, which stays fp32 (see ``_keep_in_fp32_modules_strict``)."""
        self.to(dtype)
        self.space_decoder.float()
        return self

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_config_seeded(cls, config: SpaceVLLMConfig, processor: SpaceVLLMProcessor) -> SpaceVLLMForGrounding:
        """Random init, reproducible from ``config.seed`` alone (global RNG state left untouched)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(config.seed))
            model = cls(config)
        model.processor = processor
        return model.eval()

    def _require_processor(self) -> SpaceVLLMProcessor:
        if self.processor is None:
            raise RuntimeError("model has no processor attached (load it with from_pretrained / load_grounder)")
        return self.processor

    # ------------------------------------------------------------------ prefix
    def _prefix_embeddings(
        self, pixel_inputs: dict[str, torch.Tensor], timestamps: np.ndarray, features: FrameFeatures | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, int, PrefixLayout, FrameFeatures]:
        """Visual tokens + query tokens + timestamp text, as ``inputs_embeds`` ``[1, L, D]``
        (``features``: the frames' already computed :class:`FrameFeatures`, else the vision tower runs)."""
        proc = self._require_processor()
        if features is None:
            features = self.backbone.frame_features(pixel_inputs)
        visual = features.tokens  # [T, P, D]
        t, p, d = visual.shape
        if t > self.config.max_frames:
            raise ValueError(f"{t} frames exceed max_frames={self.config.max_frames} of st_query_embed")
        layout = proc.build_prefix(timestamps, p, int(self.backbone.vlm.config.image_token_id))
        device = self.st_query_embed.weight.device
        ids = layout.input_ids.to(device)
        embeds = self.backbone.embed_text(ids[None])[0]
        queries = self.st_query_embed(torch.arange(t, device=device)).to(embeds.dtype)
        embeds = embeds.index_put((layout.positions(VISUAL).to(device),), visual.reshape(t * p, d).to(embeds.dtype))
        embeds = embeds.index_put((layout.positions(QUERY).to(device),), queries)
        position_ids, next_position = self.backbone.prefix_position_ids(layout.kinds.to(device), pixel_inputs)
        return embeds[None], position_ids, next_position, layout, features

    def _decoder_text_embeds(self, ids: torch.Tensor) -> torch.Tensor | None:
        """The input embeddings of the referring-text tokens ``ids`` [B, L] when the decoder reads them
        (``decoder_text_source="hidden+embedding"``), else ``None``."""
        if self.config.decoder_text_source != "hidden+embedding":
            return None
        return self.backbone.embed_text(ids)

    def _text_positions(self, start: int, n: int, like: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(start, start + n, device=self.st_query_embed.weight.device)[None]
        return pos[None].expand(like.shape[0], 1, n) if like.ndim == 3 else pos

    def _decoder_visual(
        self, hidden: torch.Tensor, layout: PrefixLayout, features: FrameFeatures
    ) -> tuple[torch.Tensor, tuple[int, int]]:
        """The space decoder's visual input ``[T, P, D]`` and its token grid (``decoder_visual_source``)."""
        source = self.config.decoder_visual_source
        if source == "patches":
            stem = self.space_decoder.pixel_stem
            if stem is None:
                return features.patches, features.patch_grid_hw
            fine = stem(features.pixels, features.patch_grid_hw)
            return features.patches + fine.to(features.patches.dtype), features.patch_grid_hw
        if source == "projected":
            visual = features.tokens
        else:
            t, p, d = features.tokens.shape
            visual = hidden[layout.positions(VISUAL).to(hidden.device)].reshape(t, p, d)
        if features.cell_index is not None:  # row newlines are LLM tokens, not cells of the frame's grid
            visual = visual[:, features.cell_index.to(visual.device)]
        return visual, features.grid_hw

    @torch.no_grad()
    def encode_video(self, sampled: Any) -> VideoPrefix:
        """Run the LLM once over the video prefix and keep its KV cache (``sampled``: a ``SampledVideo``)."""
        proc = self._require_processor()
        pixel_inputs = self.backbone.preprocess_frames(proc.frame_processor, sampled.frames)
        geometry = VideoGeometry.of_sampled(sampled)
        embeds, position_ids, next_position, layout, features = self._prefix_embeddings(pixel_inputs,
                                                                                        geometry.timestamps)
        out = self.backbone.language_model(inputs_embeds=embeds, position_ids=position_ids, use_cache=True)
        hidden = out.last_hidden_state[0]
        visual_states, visual_grid = self._decoder_visual(hidden, layout, features)
        return VideoPrefix(
            cache=out.cache,
            length=int(embeds.shape[1]),
            next_position=next_position,
            query_states=hidden[layout.positions(QUERY).to(hidden.device)],
            visual_states=visual_states,
            geometry=geometry,
            layout=layout,
            position_dims=3 if position_ids.ndim == 3 else 1,
            visual_grid=visual_grid,
        )

    # ------------------------------------------------------------------ queries against a prefix
    @staticmethod
    def batchable(prefix: VideoPrefix) -> bool:
        """Several queries can share one batch only on plain (non-sliding) dynamic cache layers."""
        return all(type(layer) is DynamicLayer for layer in prefix.cache.layers)

    @staticmethod
    def _expand_cache(cache: Any, batch: int, room: int = 0) -> Any:
        """A cache for ``batch`` rows over the prefix's keys/values; the prefix stays intact.

        With ``room`` (tokens still to come: instructions + answers), plain dynamic layers become
        :class:`~stvg_plugin.models.kv_cache.RoomyLayer` s: the prefix is copied once into buffers with
        that room and decoding writes in place (``DynamicLayer.update`` would concatenate, copying the
        whole batch cache at every step). Other layers *view* the prefix (expand, no copy): their
        ``update`` concatenates into new tensors, so nothing writes into the shared prefix tensors.
        """
        from transformers.cache_utils import DynamicLayer

        from stvg_plugin.models.kv_cache import RoomyLayer

        out = copy.copy(cache)
        out.layers = []
        for layer in cache.layers:
            new = copy.copy(layer)
            if getattr(layer, "is_initialized", False) and layer.keys is not None and layer.keys.numel():
                if room > 0 and type(layer) is DynamicLayer:
                    new = RoomyLayer(layer.keys, layer.values, batch, room)
                else:
                    new.keys = layer.keys.expand(batch, *layer.keys.shape[1:])
                    new.values = layer.values.expand(batch, *layer.values.shape[1:])
            out.layers.append(new)
        return out

    def _rope(self, pos: torch.Tensor, dims: int) -> torch.Tensor:
        """``[B, n]`` text positions -> what the LM takes (``[3, B, n]`` under M-RoPE: t = h = w for text)."""
        return pos[None].expand(3, *pos.shape) if dims == 3 else pos

    def _greedy(
        self,
        cache: Any,
        mask: torch.Tensor | None,
        first_logits: torch.Tensor,
        positions: torch.Tensor,
        max_new_tokens: int,
        position_dims: int = 1,
    ) -> list[list[int]]:
        """Greedy decoding of ``B`` rows together on ``cache`` (``first_logits`` [B, V]: after each instruction).

        ``positions`` [B]: each row's next position; ``mask`` [B, kv] (``None``: no padding). A row
        stops at eos (not kept) or after ``max_new_tokens`` tokens; finished rows leave the batch.
        Under SDPA the padding mask is passed ready-made (``[B, 1, 1, kv]``, the mask transformers
        would build for one new token), which skips rebuilding it at every step.
        """
        eos = self._require_processor().eos_token_id
        b = first_logits.shape[0]
        tokens: list[list[int]] = [[] for _ in range(b)]
        if max_new_tokens <= 0:
            return tokens
        lm, device = self.backbone.language_model, first_logits.device
        ready = None
        if mask is not None and lm.config._attn_implementation == "sdpa":
            if set(lm.config.layer_types or ["full_attention"]) == {"full_attention"}:
                ready = torch.cat([mask, mask.new_ones(b, max_new_tokens)], dim=1)[:, None, None, :]
        kv = 0 if mask is None else mask.shape[1]
        rows = list(range(b))  # batch row -> query index
        next_ids = first_logits.argmax(-1).tolist()
        while True:
            keep = []
            for j, (r, t) in enumerate(zip(rows, next_ids)):
                if t != eos:
                    tokens[r].append(t)
                    if len(tokens[r]) < max_new_tokens:
                        keep.append(j)
            if not keep:
                return tokens
            if len(keep) < len(rows):
                idx = torch.tensor(keep, device=device)
                cache.batch_select_indices(idx)
                positions = positions[idx]
                mask = None if mask is None else mask[idx]
                ready = None if ready is None else ready[idx]
                rows, next_ids = [rows[j] for j in keep], [next_ids[j] for j in keep]
            kv += 1
            if ready is not None:
                step_mask: Any = {"full_attention": ready[..., :kv]}
            elif mask is not None:
                mask = step_mask = torch.cat([mask, mask.new_ones(len(rows), 1)], dim=1)
            else:
                step_mask = None
            emb = self.backbone.embed_text(torch.tensor(next_ids, device=device)[:, None])
            out = lm(
                inputs_embeds=emb,
                attention_mask=step_mask,
                position_ids=self._rope(positions[:, None], position_dims),
                cache=cache,
                use_cache=True,
            )
            next_ids = self.backbone.lm_head(out.last_hidden_state[:, -1]).argmax(-1).tolist()
            positions = positions + 1

    @torch.no_grad()
    def answer_queries(self, prefix: VideoPrefix, queries: Sequence[str]) -> PrefixAnswers:
        """Answer several queries against one cached prefix in one batch; the prefix is left unchanged.

        Returns tensors and token ids (:class:`PrefixAnswers`); :class:`~stvg_plugin.models.grounder.Grounder`
        turns them into ``GroundingPrediction`` s. The instructions are right-padded to the longest and
        prefilled in one forward over the prefix cache expanded to the batch; the attention mask hides the
        pads from every later token and each row keeps its own positions (the pads take no position: a
        row's answer follows its last real instruction token). Greedy decoding then runs all rows together.
        Equals answering the queries one at a time (tests: same text, boxes to float rounding).
        Raises ``ValueError`` for an empty query (before any work).
        """
        proc = self._require_processor()
        instructions = [proc.instruction(q) for q in queries]
        t = int(prefix.query_states.shape[0])
        if not instructions:
            return PrefixAnswers(answer_ids=[], boxes=torch.zeros(0, t, 4), relevance_logits=torch.zeros(0, t))
        if len(instructions) > 1 and not self.batchable(prefix):
            parts = [self.answer_queries(prefix, [q]) for q in queries]
            return PrefixAnswers(
                answer_ids=[ids for part in parts for ids in part.answer_ids],
                boxes=torch.cat([part.boxes for part in parts]),
                relevance_logits=torch.cat([part.relevance_logits for part in parts]),
            )
        device = self.st_query_embed.weight.device
        b = len(instructions)
        lengths = [int(ins.input_ids.shape[0]) for ins in instructions]
        n = max(lengths)
        ids = torch.full((b, n), proc.eos_token_id, dtype=torch.long)
        valid = torch.zeros(b, n, dtype=torch.bool)
        for k, ins in enumerate(instructions):
            ids[k, : lengths[k]] = ins.input_ids
            valid[k, : lengths[k]] = True
        ids, valid = ids.to(device), valid.to(device)
        mask = None
        if min(lengths) < n:  # pads present: hide them from every later token
            mask = torch.cat([valid.new_ones(b, prefix.length), valid], dim=1)
        box_text = self.config.box_head == "text"
        budget = self.config.max_new_tokens_text_boxes if box_text else self.config.max_new_tokens
        cache = self._expand_cache(prefix.cache, b, room=n + budget)
        pos = torch.arange(prefix.next_position, prefix.next_position + n, device=device)[None].expand(b, n)
        out = self.backbone.language_model(
            inputs_embeds=self.backbone.embed_text(ids),
            attention_mask=mask,
            position_ids=self._rope(pos, prefix.position_dims),
            cache=cache,
            use_cache=True,
        )
        hidden = out.last_hidden_state  # [B, n, D]
        last = torch.tensor([m - 1 for m in lengths], device=device)
        first_logits = self.backbone.lm_head(hidden[torch.arange(b, device=device), last])

        # the space decoder runs per query: it is tiny next to the LM, and a batched call rounds
        # differently (1 ulp) from a single one, which would break "many == one by one" exactly
        boxes, relevance = [], []
        for k, ins in enumerate(instructions):
            decoded = self.space_decoder(
                prefix.visual_states[None],
                prefix.query_states[None],
                hidden[k, : lengths[k]][ins.query_mask.to(device)][None],
                grid_hw=prefix.visual_grid,
                text_embeds=self._decoder_text_embeds(ins.input_ids[ins.query_mask].to(device)[None]),
            )
            boxes.append(decoded.boxes[0].float().cpu())
            relevance.append(decoded.relevance_logits[0].float().cpu())

        start = torch.tensor([prefix.next_position + m for m in lengths], device=device)
        generated = self._greedy(cache, mask, first_logits, start, budget, prefix.position_dims)
        return PrefixAnswers(answer_ids=generated, boxes=torch.stack(boxes), relevance_logits=torch.stack(relevance))

    # ------------------------------------------------------------------ training
    def prepare_inputs(
        self,
        sampled: Any,
        query: str,
        answer: str | None = None,
        *,
        span_frames: tuple[int, int] | None = None,
        boxes: dict[int, list[float]] | None = None,
    ) -> GroundingInputs:
        """Model inputs from a ``SampledVideo`` + query (+ answer text for teacher forcing).

        With a ground-truth ``span_frames`` (original frames, end-exclusive) and ``boxes`` (absolute
        xyxy keyed by original frame) the per-sampled-frame targets are filled in too: a sampled frame
        is "in span" when its source index is inside the span and it has a GT box.
        """
        proc = self._require_processor()
        geometry = VideoGeometry.of_sampled(sampled)
        inputs = GroundingInputs(
            pixel_inputs=self.backbone.preprocess_frames(proc.frame_processor, sampled.frames),
            timestamps=geometry.timestamps,
            instruction=proc.instruction(query),
            answer_ids=proc.answer_ids(answer) if answer is not None else None,
            geometry=geometry,
        )
        if span_frames is not None:
            span = Span(*span_frames)
            gt = torch.zeros(len(geometry.indices), 4)
            in_span = torch.zeros(len(geometry.indices), dtype=torch.bool)
            for k, f in enumerate(geometry.indices.tolist()):
                box = (boxes or {}).get(int(f))
                if span.start <= f < span.end and box is not None:
                    w, h = max(geometry.width, 1), max(geometry.height, 1)
                    gt[k] = torch.from_numpy(box_ops.normalize_boxes(box_ops.xyxy_to_cxcywh(box), w, h))
                    in_span[k] = True
            inputs.gt_boxes, inputs.in_span = gt, in_span
        return inputs

    def forward(
        self, inputs: GroundingInputs | Sequence[GroundingInputs], loss_weights: Mapping[str, float] | None = None
    ) -> SpaceVLLMOutput:
        """Teacher-forced pass over a micro-batch: LM loss on the answer tokens + decoder boxes/relevance per frame.

        The examples run together: their frames through the vision tower in one call, their sequences
        (prefix + instruction + answer; lengths differ) right-padded into one LLM batch (each keeps its
        own positions, M-RoPE's 3-D ones included; a causal model never lets a real token see the pads
        after it, see :meth:`_run_padded`), the space decoder once per group of examples with the same frame
        grid (the query texts padded, ``text_pad``), and every loss term computed per example in one
        vectorised call (:func:`losses.grounding_losses`). Each example's outputs and losses equal a
        forward of that example alone, to float rounding (tests/test_model_batched_train.py).

        Losses, when every example carries ``gt_boxes``/``in_span``: each term per example
        (``example_losses``; an example without an answer, ``rec``, has LM term 0), weighted by
        ``loss_weights`` (keys :data:`losses.LOSS_KEYS`; a key not given: the config's ``loss_*_weight``) and
        summed once (:func:`losses.weighted_total`); ``loss`` is the mean over the examples, so a batch of
        B equals B accumulated micro-steps of one example.
        """
        examples = [inputs] if isinstance(inputs, GroundingInputs) else list(inputs)
        if not examples:
            raise ValueError("forward needs at least one example")
        device = self.st_query_embed.weight.device
        features = self.backbone.frame_features_many([ex.pixel_inputs for ex in examples])
        seqs, spans = [], []  # per example: (embeds [L, D], positions [L] | [3, L]), (prefix, instr, answer lengths)
        layouts = []
        for ex, feats in zip(examples, features):
            embeds, prefix_pos, next_position, layout, _ = self._prefix_embeddings(ex.pixel_inputs, ex.timestamps, feats)
            tail = ex.instruction.input_ids.to(device)
            n_ans = 0
            if ex.answer_ids is not None:
                tail = torch.cat([tail, ex.answer_ids.to(device)])
                n_ans = int(ex.answer_ids.shape[0])
            all_embeds = torch.cat([embeds, self.backbone.embed_text(tail[None])], dim=1)[0]
            positions = torch.cat([prefix_pos, self._text_positions(next_position, tail.shape[0], prefix_pos)], dim=-1)
            seqs.append((all_embeds, positions.reshape(-1, positions.shape[-1]) if positions.ndim == 3 else positions[0]))
            spans.append((int(embeds.shape[1]), int(ex.instruction.input_ids.shape[0]), n_ans))
            layouts.append(layout)
        hidden, lengths = self._run_padded(seqs)

        # LM loss: the answer tokens' logits of all examples in one lm_head call, cross-entropy per example
        rows, cols, targets, owners = [], [], [], []
        for k, (ex, (lp, n_instr, n_ans)) in enumerate(zip(examples, spans)):
            if n_ans:
                rows.append(torch.full((n_ans,), k, dtype=torch.long))
                cols.append(torch.arange(lp + n_instr - 1, lp + n_instr + n_ans - 1))
                targets.append(ex.answer_ids)
                owners.append(k)
        answer_logits: list[torch.Tensor] = []
        lm_per_example = hidden.new_zeros(len(examples), dtype=torch.float32)
        if owners:
            logits = self.backbone.lm_head(hidden[torch.cat(rows).to(device), torch.cat(cols).to(device)]).float()
            token_ce = F.cross_entropy(logits, torch.cat(targets).to(device), reduction="none")
            sizes = [int(t.shape[0]) for t in targets]
            answer_logits = list(logits.split(sizes))
            means = torch.stack([ce.mean() for ce in token_ce.split(sizes)])
            lm_per_example = lm_per_example.index_put((torch.tensor(owners, device=device),), means)

        decoded = self._decode_groups(examples, hidden, lengths, spans, layouts, features)
        pred_boxes, relevance_logits, token_logits, token_grid, frame_mask = decoded
        loss_lm = lm_per_example[torch.tensor(owners, device=device)].mean() if owners else None
        out = SpaceVLLMOutput(
            loss_lm=loss_lm,
            pred_boxes=pred_boxes,
            relevance_logits=relevance_logits,
            answer_logits=answer_logits or None,
            token_logits=token_logits,
            token_grid=token_grid,
            frame_mask=frame_mask,
        )
        per_example: dict[str, torch.Tensor] = {"lm": lm_per_example}
        weights = {**self.loss_weights(), **(loss_weights or {})}  # keys not given: the config's
        if all(ex.gt_boxes is not None and ex.in_span is not None for ex in examples):
            t = pred_boxes.shape[1]
            gt = torch.stack([_pad_frames(ex.gt_boxes, t) for ex in examples]).to(device)
            box_mask = torch.stack([_pad_frames(ex.in_span.bool(), t) for ex in examples]).to(device)
            target = torch.stack([
                _pad_frames((ex.relevance_target if ex.relevance_target is not None else ex.in_span).float(), t)
                for ex in examples
            ]).to(device)
            per_example.update(grounding_losses(
                pred_boxes, relevance_logits, gt, box_mask, target,
                token_logits=token_logits, grid_hw=token_grid, frame_mask=frame_mask,
            ))
            per_example["total"] = weighted_total(per_example, weights)
            out.example_losses = per_example
            out.losses = {f"loss_{k}": v.mean() for k, v in per_example.items() if k != "total"}
            out.loss = per_example["total"].mean()
        elif owners:
            out.loss = float(weights["lm"]) * loss_lm
        return out

    def loss_weights(self) -> dict[str, float]:
        """The config's loss weights, keyed as :data:`losses.LOSS_KEYS`."""
        return {k: float(getattr(self.config, f"loss_{k}_weight")) for k in LOSS_KEYS}

    #: sequences join a padded LLM batch while they are at least this fraction of its longest one (else a
    #: new batch): a one-frame ``rec`` sample (~1/10 of a 16-frame video's tokens) is not padded to a video
    PAD_FILL = 0.75

    def _run_padded(self, seqs: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, list[int]]:
        """The LLM over sequences of different lengths: ``[B, Lmax, D]`` last-layer states (zeros past a row's end).

        Sequences of similar length (:attr:`PAD_FILL`) run as one batch each, right-padded and with no
        attention mask: the LM is causal, so a real token attends to keys at or before it only, which are
        all real; the pads' own states are never read. Without a mask the attention keeps its fused causal
        kernel (a padding mask sends CPU SDPA to its unfused "math" path, several times slower). A pad
        takes the positions after its row's last token: with no mask, transformers reads a position reset
        in 1-D position ids as the start of a packed sequence. The states at real tokens equal the
        single-example pass (tests/test_model_batched_train.py).
        """
        lengths = [int(e.shape[0]) for e, _ in seqs]
        n_max = max(lengths)
        order = sorted(range(len(seqs)), key=lambda k: -lengths[k])
        buckets: list[list[int]] = []
        for k in order:
            if buckets and lengths[k] >= self.PAD_FILL * lengths[buckets[-1][0]]:
                buckets[-1].append(k)
            else:
                buckets.append([k])
        states: list[torch.Tensor] = [None] * len(seqs)  # type: ignore[list-item]
        for bucket in buckets:
            n = lengths[bucket[0]]
            embeds, positions = [], []
            for k in bucket:
                e, pos = seqs[k]
                m = lengths[k]
                embeds.append(F.pad(e, (0, 0, 0, n - m)))
                if n > m:
                    extra = torch.arange(1, n - m + 1, device=pos.device) + pos[..., -1:]
                    pos = torch.cat([pos, extra], dim=-1)
                positions.append(pos)
            position_ids = torch.stack(positions, dim=-2)  # [b, n] or [3, b, n]
            out = self.backbone.language_model(
                inputs_embeds=torch.stack(embeds), position_ids=position_ids, use_cache=False
            ).last_hidden_state
            for i, k in enumerate(bucket):
                states[k] = F.pad(out[i], (0, 0, 0, n_max - n)) if n < n_max else out[i]
        return torch.stack(states), lengths

    def _decode_groups(
        self,
        examples: list[GroundingInputs],
        hidden: torch.Tensor,
        lengths: list[int],
        spans: list[tuple[int, int, int]],
        layouts: list[PrefixLayout],
        features: list[FrameFeatures],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, tuple[int, int] | None, torch.Tensor]:
        """The space decoder over the batch: one call per group of examples whose frames share ``(T, P, grid)``.

        Returns boxes ``[B, Tmax, 4]``, relevance logits ``[B, Tmax]``, token logits ``[B, Tmax, P]``
        (``None`` unless every group has them on one grid), their grid, and the real-frame mask.
        """
        device = hidden.device
        visual, queries, texts, grids = [], [], [], []
        for k, ex in enumerate(examples):
            lp, n_instr, _ = spans[k]
            h = hidden[k, : lengths[k]]
            v, grid_hw = self._decoder_visual(h, layouts[k], features[k])
            visual.append(v)
            queries.append(h[layouts[k].positions(QUERY).to(device)])
            texts.append(h[lp : lp + n_instr][ex.instruction.query_mask.to(device)])
            grids.append(grid_hw)
        groups: dict[tuple, list[int]] = {}
        for k, v in enumerate(visual):
            groups.setdefault((tuple(v.shape[:2]), grids[k]), []).append(k)
        b, t_max = len(examples), max(int(v.shape[0]) for v in visual)
        boxes = [None] * b
        relevance = [None] * b
        tokens = [None] * b
        token_grids = set()
        for (_, grid_hw), members in groups.items():
            n_text = [int(texts[k].shape[0]) for k in members]
            width = max(n_text)
            text = torch.stack([F.pad(texts[k], (0, 0, 0, width - m)) for k, m in zip(members, n_text)])
            text_pad = None
            if min(n_text) < width:
                text_pad = torch.arange(width, device=device)[None] >= torch.tensor(n_text, device=device)[:, None]
            text_ids = torch.stack([F.pad(examples[k].instruction.input_ids[examples[k].instruction.query_mask],
                                          (0, width - m)) for k, m in zip(members, n_text)]).to(device)
            dec = self.space_decoder(
                torch.stack([visual[k] for k in members]),
                torch.stack([queries[k] for k in members]),
                text,
                text_pad=text_pad,
                grid_hw=grid_hw,
                text_embeds=self._decoder_text_embeds(text_ids),
            )
            for i, k in enumerate(members):
                boxes[k], relevance[k] = dec.boxes[i], dec.relevance_logits[i]
                if dec.token_logits is not None:
                    tokens[k] = dec.token_logits[i]
                    token_grids.add(dec.grid_hw)
        frame_mask = torch.stack([_pad_frames(torch.ones(int(v.shape[0]), dtype=torch.bool, device=device), t_max)
                                  for v in visual])
        pred_boxes = torch.stack([_pad_frames(x, t_max) for x in boxes])
        relevance_logits = torch.stack([_pad_frames(x, t_max) for x in relevance])
        token_logits, token_grid = None, None
        if all(x is not None for x in tokens) and len(token_grids) == 1:
            token_logits = torch.stack([_pad_frames(x, t_max) for x in tokens])
            token_grid = token_grids.pop()
        return pred_boxes, relevance_logits, token_logits, token_grid, frame_mask

    # ------------------------------------------------------------------ save / load
    def save_pretrained(self, save_directory: str | Path, *, dtype: torch.dtype | None = None, **kwargs: Any) -> None:
        """Weights as safetensors (transformers 5 always writes safetensors) + config + processor.

        ``dtype``: what the (given or own) state dict was cast to, recorded as ``config.json``'s
        ``dtype`` (transformers would record the first parameter's dtype, which after mixed-precision
        training is the fp32 master copy, not what was written). The space decoder is fp32 in any case.
        """
        kwargs.pop("safe_serialization", None)
        super().save_pretrained(str(save_directory), **kwargs)
        if dtype is not None:
            self.config.dtype = str(dtype).removeprefix("torch.")
            self.config.save_pretrained(str(save_directory))
        self._require_processor().save_pretrained(save_directory)

    @classmethod
    def check_checkpoint(cls, path: str | Path) -> None:
        """Family, names and shapes of a checkpoint folder against its own config, before any allocation.

        The model is built on the meta device (no memory) and compared with the safetensors headers
        (:mod:`stvg_plugin.models.checkpoint_checks`): wrong family, missing weights or mismatched
        shapes fail in seconds naming the folder. Folders with pickle weights only are not compared.
        """
        from stvg_plugin.models.backbones import BACKBONES
        from stvg_plugin.models.checkpoint_checks import check_spacevllm_config, check_weights_match

        check_spacevllm_config(path, {name: a.vlm_class.config_class.model_type for name, a in BACKBONES.items()})
        if not any(Path(path).glob("*.safetensors")):
            return
        config = SpaceVLLMConfig.from_pretrained(str(path), local_files_only=True)
        with torch.device("meta"):
            meta = cls(config)
        check_weights_match(path, meta)

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | Path,
        *args: Any,
        allow_pickle: bool = False,
        trust_remote_code: bool = False,
        **kwargs: Any,
    ) -> SpaceVLLMForGrounding:
        """Load a local checkpoint; pickle-based weights (.bin/.pt/.pth/.ckpt) are refused unless ``allow_pickle``.

        ``trust_remote_code`` is the caller's decision only: the checkpoint's own ``config.json`` value
        is ignored, and a folder whose config files ask for remote code is refused without it.
        """
        path = Path(pretrained_model_name_or_path)
        safe = check_checkpoint_files(path, allow_pickle=allow_pickle)
        check_remote_code(path, trust_remote_code=trust_remote_code)
        cls.check_checkpoint(path)
        kwargs.setdefault("local_files_only", True)
        # safetensors whenever the folder has them, even with allow_pickle (which only permits .bin-only folders)
        kwargs.setdefault("use_safetensors", bool(safe) or not allow_pickle)
        try:
            model = super().from_pretrained(str(path), *args, trust_remote_code=bool(trust_remote_code), **kwargs)
        except pickle.UnpicklingError as exc:  # allow_pickle, but torch's weights_only loader refused the file
            raise UnsafeCheckpointError(f"{path}: the pickled weights were refused by the safe loader: {exc}") from None
        except RuntimeError as exc:
            if "mismatch" not in str(exc):
                raise
            raise UnsafeCheckpointError(
                f"{path}: the weights do not fit the model its config.json describes (tensor shapes differ; "
                "see the load report above): an altered or mixed-up checkpoint"
            ) from None
        model.config.trust_remote_code = bool(trust_remote_code)  # the caller's value, not the file's
        model.processor = SpaceVLLMProcessor.from_pretrained(
            path, model.config, get_backbone(model.config.backbone), trust_remote_code=bool(trust_remote_code)
        )
        return model.eval()
