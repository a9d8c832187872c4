"""Zero-shot STVG with an off-the-shelf video LLM that has no box decoder: prompt, generate, parse.

The model is asked (``stvg_plugin.prompts``) for the span in seconds and one box per listed frame;
the answer is read by :func:`stvg_plugin.parsing.parse_answer`. An unreadable answer becomes a
prediction flagged ``parse_failed`` that keeps the raw text, so a run never stops on model output.

Encode once: the video block comes before the question, so the KV cache after the video prefix is
computed once per video and a copy is extended by each query (``reuse_video_cache=True``). With
``False`` every query re-encodes the full prompt (the reference path the tests compare against).

Only Qwen2.5-VL is implemented (native in transformers, loaded with ``local_files_only=True`` and
never ``trust_remote_code``); frames go in as separate images labelled with their timestamps. Inputs
are built from the checkpoint's tokenizer and image processor (``AutoTokenizer`` +
``AutoImageProcessor``) rather than ``AutoProcessor``: the latter also builds the video processor,
which in transformers 5.24 needs torchvision, and this backend sends no video input.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stvg_plugin.data import GroundingPrediction, GroundingQuery, StvgError
from stvg_plugin.parsing import parse_answer
from stvg_plugin.prompts import PromptStyle, get_style
from stvg_plugin.video import PrefetchLoader, SampledVideo, VideoReadError, sample_video

SUPPORTED_MODEL_TYPES = {"qwen2_5_vl": "qwen2_5_vl"}
_END_MARKERS = ("<|im_end|>", "<|endoftext|>")


@dataclass
class _VideoPrefix:
    """Everything a query needs from the encoded video: token ids, vision grid, the cache after it."""

    input_ids: torch.Tensor
    mm_token_type_ids: torch.Tensor
    image_grid_thw: torch.Tensor
    pixel_values: torch.Tensor
    cache: Any
    rope_deltas: torch.Tensor | None
    processed_size: tuple[int, int]  # (height, width) of the frames the model saw


class PromptedGrounder:
    """Same interface as the model core's ``Grounder``: ``ground(video, queries)`` and ``predict(queries)``."""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        image_processor: Any,
        *,
        family: str = "qwen2_5_vl",
        style: PromptStyle | None = None,
        num_frames: int | None = 8,
        sample_fps: float | None = None,
        max_frames: int | None = None,
        frame_size: tuple[int, int] | None = None,
        max_pixels: int | None = None,
        max_new_tokens: int = 256,
        reuse_video_cache: bool = True,
        num_workers: int = 2,
    ):
        if family not in SUPPORTED_MODEL_TYPES.values():
            raise StvgError(f"prompted backend supports {sorted(SUPPORTED_MODEL_TYPES.values())}, got {family!r}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.style = style or get_style(family)
        self.family = family
        self.sampling = {"num_frames": num_frames, "fps": sample_fps, "max_frames": max_frames, "size": frame_size}
        self.max_pixels = max_pixels
        self.max_new_tokens = max_new_tokens
        self.reuse_video_cache = reuse_video_cache
        self.num_workers = num_workers
        vocab = self.tokenizer.get_vocab()
        self._end_ids = [vocab[t] for t in _END_MARKERS if t in vocab]
        vision_markers = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")
        self._suppress_ids = [vocab[t] for t in vision_markers if t in vocab]
        self._image_token_id = vocab["<|image_pad|>"]

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        device: str = "cpu",
        dtype: str | torch.dtype = "auto",
        allow_pickle: bool = False,
        **kwargs: Any,
    ) -> PromptedGrounder:
        """Load a local checkpoint folder (no hub access, no remote code, safetensors unless ``allow_pickle``)."""
        from transformers import AutoConfig, AutoImageProcessor, AutoTokenizer, Qwen2_5_VLForConditionalGeneration

        from stvg_plugin.models.checkpoint import check_checkpoint_files

        path = Path(path)
        if not path.is_dir():
            raise StvgError(f"{path}: checkpoint folder not found")
        config = AutoConfig.from_pretrained(path, local_files_only=True)  # JSON only
        family = SUPPORTED_MODEL_TYPES.get(config.model_type)
        if family is None:
            raise StvgError(f"{path}: model_type {config.model_type!r} is not supported by the prompted backend "
                            f"(supported: {sorted(SUPPORTED_MODEL_TYPES)})")
        check_checkpoint_files(path, allow_pickle=allow_pickle)  # before any weight file is opened
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
            path, local_files_only=True, dtype=dtype, use_safetensors=not allow_pickle
        )
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        image_processor = AutoImageProcessor.from_pretrained(path, local_files_only=True)
        return cls(model.to(device), tokenizer, image_processor, family=family, **kwargs)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ------------------------------------------------------------------ public API

    def ground(
        self,
        video: str | Path | SampledVideo,
        queries: Sequence[str],
        *,
        task: str | Sequence[str] = "stvg",
        qids: Sequence[str] | None = None,
    ) -> list[GroundingPrediction]:
        """Ground several queries on one video, encoding the video once. Raises ``VideoReadError``."""
        sampled = video if isinstance(video, SampledVideo) else self._sample(video)
        tasks = [task] * len(queries) if isinstance(task, str) else list(task)
        qids = [str(i) for i in range(len(queries))] if qids is None else list(qids)
        if not (len(tasks) == len(qids) == len(queries)):
            raise ValueError(f"{len(queries)} queries but {len(tasks)} tasks and {len(qids)} qids")
        if not queries:
            return []
        prefix = self._encode_video(sampled)
        return [self._answer(sampled, prefix, q, t, qid) for q, t, qid in zip(queries, tasks, qids)]

    def predict(self, queries: Sequence[GroundingQuery], progress: bool = True) -> Iterator[GroundingPrediction]:
        """Predictions for every query, grouped by video; a bad video yields ``error`` predictions."""
        groups: dict[str, list[GroundingQuery]] = {}
        for q in queries:
            groups.setdefault(q.video, []).append(q)
        bar = _progress(len(queries), progress)
        loader = PrefetchLoader(list(groups.items()), self._sample_group, num_workers=self.num_workers)
        try:
            for (video, group), sampled in loader:
                if isinstance(sampled, VideoReadError):
                    preds = [_error_prediction(q, str(sampled)) for q in group]
                else:
                    preds = self._predict_group(video, group, sampled)
                for pred in preds:
                    bar.update(1)
                    yield pred
        finally:
            bar.close()

    # ------------------------------------------------------------------ internals

    def _sample(self, video: str | Path) -> SampledVideo:
        return sample_video(video, **self.sampling)

    def _sample_group(self, item: tuple[str, list[GroundingQuery]]) -> SampledVideo:
        return self._sample(item[0])

    def _predict_group(self, video: str, group: list[GroundingQuery], sampled: SampledVideo) -> list[GroundingPrediction]:
        try:
            prefix = self._encode_video(sampled)
        except (StvgError, ValueError) as exc:  # e.g. frames the processor cannot resize
            return [_error_prediction(q, f"{video}: cannot encode video: {exc}") for q in group]
        return [self._answer(sampled, prefix, q.query, q.task, q.qid) for q in group]

    def _image_inputs(self, text: str, frames: np.ndarray) -> dict[str, torch.Tensor]:
        """What ``Qwen2_5_VLProcessor`` builds for text + images: each ``<|image_pad|>`` expanded to
        ``prod(grid) / merge**2`` tokens, and ``mm_token_type_ids`` = 1 on image tokens."""
        kwargs: dict[str, Any] = {}
        if self.max_pixels is not None:
            kwargs["size"] = {"shortest_edge": min(56 * 56, self.max_pixels), "longest_edge": self.max_pixels}
        vision = self.image_processor(images=[np.ascontiguousarray(f) for f in frames], return_tensors="pt", **kwargs)
        grid = vision["image_grid_thw"]
        merge = int(getattr(self.image_processor, "merge_size", 2)) ** 2
        pad = "<|image_pad|>"
        pieces = text.split(pad)
        if len(pieces) - 1 != grid.shape[0]:
            raise StvgError(f"prompt has {len(pieces) - 1} image placeholders for {grid.shape[0]} frames")
        expanded = pieces[0] + "".join(pad * (int(g.prod()) // merge) + rest for g, rest in zip(grid, pieces[1:]))
        ids = self.tokenizer(expanded, add_special_tokens=False, return_tensors="pt")["input_ids"]
        mm = (ids == self._image_token_id).to(torch.int32)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "mm_token_type_ids": mm,
                "pixel_values": vision["pixel_values"], "image_grid_thw": grid}

    @torch.inference_mode()
    def _encode_video(self, sampled: SampledVideo) -> _VideoPrefix:
        if len(sampled) == 0:
            raise StvgError(f"{sampled.info.path}: no frames were sampled")
        text = self.style.prefix([float(t) for t in sampled.timestamps])
        inputs = {k: v.to(self.device) for k, v in self._image_inputs(text, sampled.frames).items()}
        grid = inputs["image_grid_thw"]
        patch = int(getattr(self.image_processor, "patch_size", 14))
        processed = (int(grid[0, 1]) * patch, int(grid[0, 2]) * patch)
        cache = rope_deltas = None
        if self.reuse_video_cache:
            out = self.model(**inputs, use_cache=True)
            cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
            rope_deltas = self.model.model.rope_deltas
        return _VideoPrefix(inputs["input_ids"], inputs["mm_token_type_ids"], grid, inputs["pixel_values"],
                            cache, rope_deltas, processed)

    @torch.inference_mode()
    def generate_text(self, prefix: _VideoPrefix, suffix: str) -> str:
        """Greedy answer to ``prefix + suffix``; extends a copy of the cached video prefix when available."""
        suffix_ids = self.tokenizer(suffix, add_special_tokens=False, return_tensors="pt")["input_ids"].to(self.device)
        input_ids = torch.cat([prefix.input_ids, suffix_ids], dim=1)
        kwargs: dict[str, Any] = {
            "input_ids": input_ids,
            "attention_mask": torch.ones_like(input_ids),
            "mm_token_type_ids": torch.cat([prefix.mm_token_type_ids, torch.zeros_like(suffix_ids)], dim=1),
            "image_grid_thw": prefix.image_grid_thw,
            "max_new_tokens": self.max_new_tokens,
            "do_sample": False,
            "eos_token_id": self._end_ids or None,
            "pad_token_id": self._end_ids[-1] if self._end_ids else None,
        }
        if self._suppress_ids:
            kwargs["suppress_tokens"] = self._suppress_ids
        if prefix.cache is not None:
            kwargs["cache"] = copy.deepcopy(prefix.cache)
            self.model.model.rope_deltas = prefix.rope_deltas  # positions after the video, as for a full pass
        else:
            kwargs["pixel_values"] = prefix.pixel_values
        output = self.model.generate(**kwargs)
        text = self.tokenizer.decode(output[0, input_ids.shape[1]:], skip_special_tokens=False)
        for marker in _END_MARKERS:
            text = text.replace(marker, "")
        return text.strip()

    def _answer(self, sampled: SampledVideo, prefix: _VideoPrefix, query: str, task: str, qid: str
                ) -> GroundingPrediction:
        info = sampled.info
        text = self.generate_text(prefix, self.style.suffix(query, info.duration_s, task))
        parsed = parse_answer(
            text, duration_s=info.duration_s, fps=info.fps, num_frames=info.num_frames, width=info.width,
            height=info.height, processed_size=prefix.processed_size,
            sampled_timestamps=sampled.timestamps.tolist(), sampled_indices=sampled.indices.tolist(),
            coord_hint=self.style.coord_hint(),
        )
        pred = parsed.to_prediction(qid)
        if task == "rec":
            pred.span_frames = pred.span_s = None
        pred.extra["backend"] = f"prompted:{self.family}"
        return pred


def _error_prediction(query: GroundingQuery, message: str) -> GroundingPrediction:
    return GroundingPrediction(qid=query.qid, error=message)


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool):
    if not enabled:
        return _NoBar()
    from stvg_plugin.util.progress import progress_bar

    return progress_bar(total=total, desc="grounding", unit="query")


# ---------------------------------------------------------------------- tiny model for tests


def _tiny_tokenizer():
    """Byte-level tokenizer (every string encodable, random ids decode to text) + Qwen special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    byte_chars = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(byte_chars))}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                "<|image_pad|>", "<|video_pad|>", "<|box_start|>", "<|box_end|>", "<|object_ref_start|>",
                "<|object_ref_end|>"]
    tok = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                  additional_special_tokens=specials)
    return tok


def build_tiny_prompted(folder: str | Path, seed: int = 0) -> Path:
    """Write a tiny random-initialised Qwen2.5-VL checkpoint (config, safetensors, processor) to ``folder``.

    Built from code only (no hub), so ``PromptedGrounder.from_pretrained(folder)`` runs exactly as with
    a real checkpoint. Its answers are random text: it exercises the pipeline and the failure flags.
    """
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2VLImageProcessorPil,
    )

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tok = _tiny_tokenizer()
    ids = {t: tok.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>",
                                                    "<|vision_end|>", "<|endoftext|>", "<|im_end|>")}
    image_processor = Qwen2VLImageProcessorPil(size={"shortest_edge": 28 * 28, "longest_edge": 56 * 56})
    vocab_size = ((len(tok) + 63) // 64) * 64
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": vocab_size, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 4096,
            # a wide init keeps greedy choices well separated, so cached and full passes agree
            "initializer_range": 0.2,
            "rope_parameters": {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0},
            "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 1, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 64,
            "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 56,
            "fullatt_block_indexes": [0], "tokens_per_second": 2,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    image_processor.save_pretrained(folder)
    return folder
