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
    (``decoder_visual_source="hidden"``; ``"projected"`` = the projector output) and its text input
    = the last-layer states of the referring-text tokens only;
  * a per-frame relevance logit from the decoder's query state: a second span estimate
    (``span_source`` = text | relevance | combined) and a BCE target;
  * ``box_head="text"``: ablation where the LLM writes one normalised box per sampled frame;
  * greedy decoding with our own short loop (so the cached prefix and M-RoPE positions stay under
    our control); the prefix KV cache is deep-copied per query ("encode once, ground many").

Reading order: ``VideoPrefix`` -> ``SpaceVLLMForGrounding.__init__`` -> ``_prefix_embeddings`` ->
``encode_video`` -> ``ground_prefix`` -> ``forward`` (training) -> save / load.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from stvg_plugin.data import GroundingPrediction, Span
from stvg_plugin.models.backbones import QUERY, VISUAL, BackboneAdapter, get_backbone
from stvg_plugin.models.checkpoint import check_checkpoint_files
from stvg_plugin.models.configuration_spacevllm import SpaceVLLMConfig
from stvg_plugin.models.decoding import VideoGeometry, build_prediction
from stvg_plugin.models.losses import grounding_loss
from stvg_plugin.models.processing_spacevllm import InstructionTokens, PrefixLayout, SpaceVLLMProcessor
from stvg_plugin.models.space_decoder import QueryGuidedSpaceDecoder


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


@dataclass
class GroundingInputs:
    """One training/inference example before the model (built by :meth:`prepare_inputs`)."""

    pixel_inputs: dict[str, torch.Tensor]
    timestamps: np.ndarray
    instruction: InstructionTokens
    answer_ids: torch.Tensor | None = None
    gt_boxes: torch.Tensor | None = None  # [T, 4] normalised cxcywh at the sampled frames
    in_span: torch.Tensor | None = None  # [T] bool, sampled frame inside the GT span
    geometry: VideoGeometry | None = None


@dataclass
class SpaceVLLMOutput(ModelOutput):
    loss: torch.Tensor | None = None
    loss_lm: torch.Tensor | None = None
    losses: dict[str, torch.Tensor] | None = None
    pred_boxes: torch.Tensor | None = None  # [B, T, 4] normalised cxcywh
    relevance_logits: torch.Tensor | None = None  # [B, T]
    answer_logits: list[torch.Tensor] | None = field(default=None)


class SpaceVLLMPreTrainedModel(PreTrainedModel):
    config: SpaceVLLMConfig
    config_class = SpaceVLLMConfig
    base_model_prefix = "spacevllm"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _no_split_modules = ["QueryGuidedSpaceDecoder"]


class SpaceVLLMForGrounding(SpaceVLLMPreTrainedModel):
    def __init__(self, config: SpaceVLLMConfig, backbone: BackboneAdapter | None = None):
        super().__init__(config)
        adapter_cls = get_backbone(config.backbone)
        self.backbone = backbone if backbone is not None else adapter_cls.from_config(config.vlm_config)
        d = self.backbone.hidden_size
        self.st_query_embed = nn.Embedding(config.max_frames + 1, d)
        self.space_decoder = QueryGuidedSpaceDecoder(
            d, config.decoder_dim, config.decoder_heads, config.decoder_layers, config.decoder_mlp_ratio
        )
        self.processor: SpaceVLLMProcessor | None = None
        self.post_init()

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
        self, pixel_inputs: dict[str, torch.Tensor], timestamps: np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor, int, PrefixLayout, torch.Tensor]:
        """Visual tokens + query tokens + timestamp text, as ``inputs_embeds`` ``[1, L, D]``."""
        proc = self._require_processor()
        visual = self.backbone.frame_tokens(pixel_inputs)  # [T, P, D]
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
        return embeds[None], position_ids, next_position, layout, visual

    def _text_positions(self, start: int, n: int, like: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(start, start + n, device=self.st_query_embed.weight.device)[None]
        return pos[None].expand(like.shape[0], 1, n) if like.ndim == 3 else pos

    def _decoder_visual(self, hidden: torch.Tensor, layout: PrefixLayout, projected: torch.Tensor) -> torch.Tensor:
        if self.config.decoder_visual_source == "projected":
            return projected
        t, p, d = projected.shape
        return hidden[layout.positions(VISUAL).to(hidden.device)].reshape(t, p, d)

    @torch.no_grad()
    def encode_video(self, sampled: Any) -> VideoPrefix:
        """Run the LLM once over the video prefix and keep its KV cache (``sampled``: a ``SampledVideo``)."""
        proc = self._require_processor()
        pixel_inputs = self.backbone.preprocess_frames(proc.frame_processor, sampled.frames)
        timestamps = np.asarray(sampled.timestamps, dtype=np.float64)
        embeds, position_ids, next_position, layout, projected = self._prefix_embeddings(pixel_inputs, timestamps)
        out = self.backbone.language_model(inputs_embeds=embeds, position_ids=position_ids, use_cache=True)
        hidden = out.last_hidden_state[0]
        info = sampled.info
        geometry = VideoGeometry(
            indices=np.asarray(sampled.indices),
            timestamps=timestamps,
            fps=float(info.fps),
            num_frames=int(info.num_frames),
            width=int(info.width),
            height=int(info.height),
        )
        return VideoPrefix(
            cache=out.cache,
            length=int(embeds.shape[1]),
            next_position=next_position,
            query_states=hidden[layout.positions(QUERY).to(hidden.device)],
            visual_states=self._decoder_visual(hidden, layout, projected),
            geometry=geometry,
            layout=layout,
        )

    # ------------------------------------------------------------------ one query against a prefix
    def _greedy(self, cache: Any, first_logits: torch.Tensor, position: int, max_new_tokens: int) -> list[int]:
        """Greedy decoding on the copied cache; stops at eos (``first_logits``: after the instruction)."""
        eos = self._require_processor().eos_token_id
        tokens: list[int] = []
        next_id = int(first_logits.argmax(-1))
        lm = self.backbone.language_model
        device = self.st_query_embed.weight.device
        while next_id != eos and len(tokens) < max_new_tokens:
            tokens.append(next_id)
            if len(tokens) == max_new_tokens:
                break
            emb = self.backbone.embed_text(torch.tensor([[next_id]], device=device))
            pos = torch.tensor([[position]], device=device)
            out = lm(inputs_embeds=emb, position_ids=pos, cache=cache, use_cache=True)
            next_id = int(self.backbone.lm_head(out.last_hidden_state[:, -1]).argmax(-1))
            position += 1
        return tokens

    @torch.no_grad()
    def ground_prefix(self, prefix: VideoPrefix, query_text: str, qid: str = "") -> GroundingPrediction:
        """Answer one query against a cached prefix; the prefix itself is left unchanged.

        Raises ``ValueError`` for an empty query; odd generated text never raises (``parse_failed``).
        """
        proc = self._require_processor()
        instruction = proc.instruction(query_text)
        device = self.st_query_embed.weight.device
        ids = instruction.input_ids.to(device)[None]
        cache = copy.deepcopy(prefix.cache)
        n = ids.shape[1]
        pos = torch.arange(prefix.next_position, prefix.next_position + n, device=device)[None]
        out = self.backbone.language_model(
            inputs_embeds=self.backbone.embed_text(ids), position_ids=pos, cache=cache, use_cache=True
        )
        hidden = out.last_hidden_state[0]
        decoded = self.space_decoder(
            prefix.visual_states[None], prefix.query_states[None], hidden[instruction.query_mask.to(device)][None]
        )
        box_text = self.config.box_head == "text"
        budget = self.config.max_new_tokens_text_boxes if box_text else self.config.max_new_tokens
        first_logits = self.backbone.lm_head(out.last_hidden_state[:, -1])[0]
        tokens = self._greedy(cache, first_logits, prefix.next_position + n, budget)
        text = proc.decode(tokens)
        text_boxes = proc.parse_boxes(text, len(prefix.geometry.indices)) if box_text else None
        return build_prediction(
            qid,
            text,
            prefix.geometry,
            span_source=self.config.span_source,
            decoder_boxes_cxcywh=decoded.boxes[0].float().cpu().numpy(),
            relevance_logits=decoded.relevance_logits[0].float().cpu().numpy(),
            text_boxes_xyxy=text_boxes,
            threshold=self.config.relevance_threshold,
        )

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
        info = sampled.info
        geometry = VideoGeometry(
            indices=np.asarray(sampled.indices),
            timestamps=np.asarray(sampled.timestamps, dtype=np.float64),
            fps=float(info.fps),
            num_frames=int(info.num_frames),
            width=int(info.width),
            height=int(info.height),
        )
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
                    x1, y1, x2, y2 = box
                    w, h = max(geometry.width, 1), max(geometry.height, 1)
                    gt[k] = torch.tensor([(x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h])
                    in_span[k] = True
            inputs.gt_boxes, inputs.in_span = gt, in_span
        return inputs

    def forward(self, inputs: GroundingInputs | Sequence[GroundingInputs]) -> SpaceVLLMOutput:
        """Teacher-forced pass: LM loss on the answer tokens only + decoder boxes/relevance per frame.

        One sequence per example (frames differ in length across videos; a tiny model trains with a
        batch of 1-4 on CPU), outputs stacked. When the inputs carry ``gt_boxes``/``in_span`` the
        decoder losses (:mod:`losses`) are added with the config's weights into ``loss``.
        """
        examples = [inputs] if isinstance(inputs, GroundingInputs) else list(inputs)
        lm_losses, boxes, logits, answer_logits = [], [], [], []
        for ex in examples:
            embeds, prefix_pos, next_position, layout, projected = self._prefix_embeddings(
                ex.pixel_inputs, ex.timestamps
            )
            device = embeds.device
            tail = ex.instruction.input_ids.to(device)
            n_instr = tail.shape[0]
            if ex.answer_ids is not None:
                tail = torch.cat([tail, ex.answer_ids.to(device)])
            all_embeds = torch.cat([embeds, self.backbone.embed_text(tail[None])], dim=1)
            positions = torch.cat([prefix_pos, self._text_positions(next_position, tail.shape[0], prefix_pos)], dim=-1)
            out = self.backbone.language_model(inputs_embeds=all_embeds, position_ids=positions, use_cache=False)
            hidden = out.last_hidden_state[0]
            lp = embeds.shape[1]
            if ex.answer_ids is not None:
                n_ans = ex.answer_ids.shape[0]
                ans_logits = self.backbone.lm_head(hidden[lp + n_instr - 1 : lp + n_instr + n_ans - 1]).float()
                lm_losses.append(F.cross_entropy(ans_logits, ex.answer_ids.to(device)))
                answer_logits.append(ans_logits)
            text_states = hidden[lp : lp + n_instr][ex.instruction.query_mask.to(device)]
            decoded = self.space_decoder(
                self._decoder_visual(hidden, layout, projected)[None],
                hidden[layout.positions(QUERY).to(device)][None],
                text_states[None],
            )
            boxes.append(decoded.boxes)
            logits.append(decoded.relevance_logits)
        pred_boxes, relevance_logits = torch.cat(boxes), torch.cat(logits)
        loss_lm = torch.stack(lm_losses).mean() if lm_losses else None
        losses: dict[str, torch.Tensor] = {}
        if all(ex.gt_boxes is not None and ex.in_span is not None for ex in examples):
            cfg = self.config
            losses = grounding_loss(
                pred_boxes,
                relevance_logits,
                torch.stack([ex.gt_boxes for ex in examples]).to(pred_boxes.device),
                torch.stack([ex.in_span for ex in examples]).to(pred_boxes.device),
                l1_weight=cfg.loss_l1_weight,
                giou_weight=cfg.loss_giou_weight,
                relevance_weight=cfg.loss_relevance_weight,
            )
        total = None
        if loss_lm is not None:
            total = self.config.loss_lm_weight * loss_lm
        if losses:
            total = losses["loss"] if total is None else total + losses["loss"]
        return SpaceVLLMOutput(
            loss=total,
            loss_lm=loss_lm,
            losses=losses or None,
            pred_boxes=pred_boxes,
            relevance_logits=relevance_logits,
            answer_logits=answer_logits or None,
        )

    # ------------------------------------------------------------------ save / load
    def save_pretrained(self, save_directory: str | Path, **kwargs: Any) -> None:
        """Weights as safetensors (transformers 5 always writes safetensors) + config + processor."""
        kwargs.pop("safe_serialization", None)
        super().save_pretrained(str(save_directory), **kwargs)
        self._require_processor().save_pretrained(save_directory)

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | Path, *args: Any, allow_pickle: bool = False, **kwargs: Any
    ) -> SpaceVLLMForGrounding:
        """Load a local checkpoint; pickle-based weights (.bin/.pt/.pth/.ckpt) are refused unless ``allow_pickle``."""
        path = Path(pretrained_model_name_or_path)
        check_checkpoint_files(path, allow_pickle=allow_pickle)
        kwargs.setdefault("local_files_only", True)
        kwargs.setdefault("use_safetensors", not allow_pickle)
        model = super().from_pretrained(str(path), *args, **kwargs)
        model.processor = SpaceVLLMProcessor.from_pretrained(path, model.config, get_backbone(model.config.backbone))
        return model.eval()
