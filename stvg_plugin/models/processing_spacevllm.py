"""Turns frames, timestamps, a query and an answer into token layouts.

The prompt lives in config (defaults and the frame numbering, from 0, in :mod:`stvg_plugin.prompts`).

Prefix layout (ours; order after SpaceVLLM's interleaving, notes §2 S)::

    prompt_prefix
    frame_template(0, t0)  <visual x P>  <query 0>  frame_suffix
    frame_template(1, t1)  <visual x P>  <query 1>  frame_suffix
    ...
                                  -- end of the video prefix (KV cache reused for every query) --
    instruction_template(query)   -- the referring text comes AFTER the video
    answer                        -- "from 1.0 s to 2.5 s" (+ boxes for box_head=text) + eos

The prefix never depends on the query text, so its KV cache is computed once per video.
Each piece is tokenised on its own and concatenated, identically in training and inference.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from stvg_plugin.models.backbones import QUERY, TEXT, VISUAL, BackboneAdapter
from stvg_plugin.models.configuration_spacevllm import SpaceVLLMConfig
from stvg_plugin.models.tokenizer import SPECIAL_TOKENS
from stvg_plugin.parsing import format_span_text, parse_span_text
from stvg_plugin.prompts import CORE_INDEX_BASE, frame_lines

QUERY_TOKEN = "<st_query>"
_BOX_RE = re.compile(
    r"frame\s*(\d+)\s*:\s*\[\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*\]",
    re.IGNORECASE,
)


@dataclass
class PrefixLayout:
    """Token ids (placeholders at visual/query positions), kinds (TEXT/VISUAL/QUERY) and frame of each token."""

    input_ids: torch.Tensor  # [L] long
    kinds: torch.Tensor  # [L] long
    frame_of: torch.Tensor  # [L] long, -1 for text

    def positions(self, kind: int) -> torch.Tensor:
        return torch.nonzero(self.kinds == kind).squeeze(-1)


@dataclass
class InstructionTokens:
    input_ids: torch.Tensor  # [L] long
    query_mask: torch.Tensor  # [L] bool: True on the referring-text tokens


class SpaceVLLMProcessor:
    """Tokenizer + frame processor + the prompt templates of a :class:`SpaceVLLMConfig`."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, frame_processor: Any, config: SpaceVLLMConfig):
        self.tokenizer = tokenizer
        self._id_cache: dict[str, tuple[int, ...]] = {}
        self.frame_processor = frame_processor
        self.config = config
        if QUERY_TOKEN not in tokenizer.get_vocab():
            tokenizer.add_special_tokens({"additional_special_tokens": [QUERY_TOKEN]})
        self.query_token_id = int(tokenizer.convert_tokens_to_ids(QUERY_TOKEN))
        if tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer has no eos token; generation could not stop")
        self.eos_token_id = int(tokenizer.eos_token_id)

    # ------------------------------------------------------------------ text pieces
    #: texts whose token ids are remembered (frame headers, templates, queries): the trainer builds every
    #: step's prompts from the same few hundred texts (with the vectorised frame path, a step's inputs take
    #: 9.2 ms instead of 21.9 ms: bench/bench_train_inputs.py)
    ID_CACHE_SIZE = 8192

    def _ids(self, text: str) -> list[int]:
        if not text:
            return []
        cache = self._id_cache
        ids = cache.get(text)
        if ids is None:
            ids = tuple(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            if len(cache) >= self.ID_CACHE_SIZE:
                cache.clear()
            cache[text] = ids
        return list(ids)

    def build_prefix(self, timestamps: np.ndarray, tokens_per_frame: int, visual_token_id: int) -> PrefixLayout:
        cfg = self.config
        ids: list[int] = self._ids(cfg.prompt_prefix)
        kinds: list[int] = [TEXT] * len(ids)
        frames: list[int] = [-1] * len(ids)
        suffix = self._ids(cfg.frame_suffix)
        heads = frame_lines(cfg.frame_template, np.asarray(timestamps, dtype=np.float64).tolist(),
                            index_base=CORE_INDEX_BASE)
        for index, head_text in enumerate(heads):
            head = self._ids(head_text)
            ids += head + [visual_token_id] * tokens_per_frame + [self.query_token_id] + suffix
            kinds += [TEXT] * len(head) + [VISUAL] * tokens_per_frame + [QUERY] + [TEXT] * len(suffix)
            frames += [-1] * len(head) + [index] * (tokens_per_frame + 1) + [-1] * len(suffix)
        return PrefixLayout(
            input_ids=torch.tensor(ids, dtype=torch.long),
            kinds=torch.tensor(kinds, dtype=torch.long),
            frame_of=torch.tensor(frames, dtype=torch.long),
        )

    def instruction(self, query: str) -> InstructionTokens:
        """Template split around ``{query}`` so the referring-text tokens are known exactly."""
        if not isinstance(query, str) or not query.strip():
            raise ValueError("empty query text")
        before, after = self.config.instruction_template.split("{query}", 1)
        pre, mid, post = self._ids(before), self._ids(query.strip()), self._ids(after)
        mask = [False] * len(pre) + [True] * len(mid) + [False] * len(post)
        return InstructionTokens(torch.tensor(pre + mid + post, dtype=torch.long), torch.tensor(mask, dtype=torch.bool))

    def answer_ids(self, answer: str) -> torch.Tensor:
        """Answer tokens + eos (the LM is trained to stop)."""
        return torch.tensor(self._ids(answer) + [self.eos_token_id], dtype=torch.long)

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    # ------------------------------------------------------------------ answers
    def format_answer(self, span_s: tuple[float, float], boxes_xyxy_norm: dict[int, list[float]] | None = None) -> str:
        """Teacher-forcing target: the span template, plus one box per listed sampled frame if given."""
        text = format_span_text(*span_s)
        if boxes_xyxy_norm:
            parts = [
                self.config.box_text_template.format(index=i, x1=b[0], y1=b[1], x2=b[2], y2=b[3])
                for i, b in sorted(boxes_xyxy_norm.items())
            ]
            text += "; " + "; ".join(parts)
        return text

    @staticmethod
    def parse_span(text: str) -> tuple[float, float] | None:
        return parse_span_text(text)

    @staticmethod
    def parse_boxes(text: str, num_frames: int) -> dict[int, list[float]]:
        """``frame k: [x1, y1, x2, y2]`` (normalised 0-1) -> ``{k: box}``; out-of-range frames dropped."""
        out: dict[int, list[float]] = {}
        for m in _BOX_RE.finditer(text or ""):
            k = int(m.group(1))
            if 0 <= k < num_frames and k not in out:
                out[k] = [float(m.group(i)) for i in range(2, 6)]
        return out

    # ------------------------------------------------------------------ save / load
    def save_pretrained(self, directory: str | Path) -> None:
        self.tokenizer.save_pretrained(str(directory))
        self.frame_processor.save_pretrained(str(directory))

    @classmethod
    def from_pretrained(
        cls,
        directory: str | Path,
        config: SpaceVLLMConfig,
        adapter_cls: type[BackboneAdapter],
        *,
        trust_remote_code: bool = False,
    ) -> SpaceVLLMProcessor:
        """``trust_remote_code`` comes from the caller, never from ``config`` (which a checkpoint file sets)."""
        tokenizer = AutoTokenizer.from_pretrained(
            str(directory), local_files_only=True, trust_remote_code=bool(trust_remote_code)
        )
        return cls(tokenizer, adapter_cls.load_frame_processor_for(directory, config), config)


def special_token_ids(tokenizer: PreTrainedTokenizerBase) -> dict[str, int]:
    """Ids a tiny VLM config needs from the character tokenizer."""
    get = tokenizer.convert_tokens_to_ids
    assert set(SPECIAL_TOKENS) <= set(tokenizer.get_vocab())
    return {
        "pad": get("<|endoftext|>"),
        "eos": get("<|im_end|>"),
        "image": get("<image>"),
        "video": get("<video>"),
        "vision_start": get("<|vision_start|>"),
        "vision_end": get("<|vision_end|>"),
        "image_pad": get("<|image_pad|>"),
    }
