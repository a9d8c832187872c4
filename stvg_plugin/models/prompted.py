"""Zero-shot STVG with an off-the-shelf video LLM that has no box decoder: prompt, generate, parse.

The model is asked (``stvg_plugin.prompts``) for the span in seconds and one box per listed frame;
the answer is read by :func:`stvg_plugin.parsing.parse_answer` and the boxes it gives at some frames
are filled over the span (:func:`~stvg_plugin.models.decoding.fill_prediction_boxes`). An unreadable
answer becomes a prediction flagged ``parse_failed`` that keeps the raw text, so a run never stops.

Families (``stvg_plugin.models.families``: Qwen2.5-VL, Qwen3-VL, InternVL 3/3.5, LLaVA-OneVision /
LLaVA-Video) are loaded with ``from_pretrained(path, local_files_only=True)`` and never
``trust_remote_code``. Inputs come from the family's own transformers processor, built from the
checkpoint's tokenizer and image processor without its video processor (which needs torchvision):
frames go in as separate images labelled with their timestamps.

Encode once: the video block comes before the question, so the KV cache after the video prefix is
computed once per video (logits of its last position only) and a copy is extended by each query
(``reuse_video_cache=True``). With ``False`` every query re-encodes the full prompt (the reference
path the tests compare against).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stvg_plugin.data import GroundingPrediction, GroundingQuery, StvgError
from stvg_plugin.models.decoding import answer_to_prediction
from stvg_plugin.models.families import FamilySpec, family_for_model_type, get_family
from stvg_plugin.prompts import PromptStyle, resolve_style
from stvg_plugin.recipes import get_recipe
from stvg_plugin.video import PrefetchLoader, SampledVideo, VideoReadError, sample_video

_END_MARKERS = ("<|im_end|>", "<|endoftext|>")
_VISION_MARKERS = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>", "<image>", "<video>",
                   "<IMG_CONTEXT>", "<img>", "</img>")
#: processor outputs with one value per token: extended by the question's tokens
_PER_TOKEN = {"input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids"}
#: processor outputs that carry pixels: only needed when the prefix is not cached
_PIXELS = {"pixel_values", "pixel_values_videos"}


@dataclass
class _VideoPrefix:
    """Everything a query needs from the encoded video: processor outputs, the cache after them."""

    inputs: dict[str, torch.Tensor]
    cache: Any
    processed_size: tuple[int, int] | None  # (height, width) of the frames the model saw (pixel answers)
    state: dict[str, Any] = field(default_factory=dict)  # family state a cached prefix restores (rope_deltas)

    @property
    def input_ids(self) -> torch.Tensor:
        return self.inputs["input_ids"]


class PromptedGrounder:
    """Same interface as the model core's ``Grounder``: ``ground(video, queries)`` and ``predict(queries)``."""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        image_processor: Any,
        *,
        family: str | FamilySpec = "qwen2_5_vl",
        style: PromptStyle | str | dict | None = None,
        recipe: str | None = None,
        num_frames: int | None = 8,
        sample_fps: float | None = None,
        max_frames: int | None = None,
        frame_size: tuple[int, int] | None = None,
        max_pixels: int | None = None,
        max_new_tokens: int = 256,
        reuse_video_cache: bool = True,
        num_workers: int = 2,
    ):
        spec = family if isinstance(family, FamilySpec) else get_family(str(family))
        self.spec = spec
        self.family = spec.name
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.processor = spec.make_processor(tokenizer, image_processor, getattr(model, "config", None))
        self.style = resolve_style(style, spec.name)
        if recipe:
            self.style = get_recipe(str(recipe)).apply(self.style)
        self.recipe = recipe or "default"
        self.sampling = {"num_frames": num_frames, "fps": sample_fps, "max_frames": max_frames, "size": frame_size}
        self.max_pixels = max_pixels
        self.max_new_tokens = max_new_tokens
        self.reuse_video_cache = reuse_video_cache
        self.num_workers = num_workers
        vocab = self.tokenizer.get_vocab()
        self._end_ids = [vocab[t] for t in _END_MARKERS if t in vocab]
        self._suppress_ids = [vocab[t] for t in _VISION_MARKERS if t in vocab]

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
        from transformers import AutoImageProcessor, AutoTokenizer

        from stvg_plugin.models.checkpoint import check_checkpoint_files, check_remote_code

        path = Path(path)
        if not path.is_dir():
            raise StvgError(f"{path}: checkpoint folder not found")
        try:  # the family first, from the JSON: a remote-code model_type must not reach AutoConfig
            model_type = json.loads((path / "config.json").read_text(encoding="utf-8")).get("model_type")
        except (OSError, ValueError, AttributeError):
            raise StvgError(f"{path / 'config.json'}: missing or not a JSON object") from None
        spec = family_for_model_type(str(model_type), path)
        wanted = kwargs.pop("family", None)
        if wanted is not None and get_family(str(wanted)).name != spec.name:
            raise StvgError(f"{path}: family {wanted!r} was configured but the checkpoint's model_type "
                            f"{model_type!r} belongs to family {spec.name!r}")
        check_remote_code(path)  # the prompted backend never runs code shipped in a checkpoint
        check_checkpoint_files(path, allow_pickle=allow_pickle)  # before any weight file is opened
        model = spec.model_cls().from_pretrained(
            path, local_files_only=True, dtype=dtype, use_safetensors=not allow_pickle
        )
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        image_processor = AutoImageProcessor.from_pretrained(path, local_files_only=True)
        return cls(model.to(device), tokenizer, image_processor, family=spec, **kwargs)

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
        """The family processor's standard inputs for ``text`` with one image per frame."""
        kwargs: dict[str, Any] = dict(self.spec.frame_kwargs)
        if self.max_pixels is not None:
            if self.spec.pixel_budget is None:
                raise StvgError(f"max_pixels is not supported by family {self.family!r} (its frames have a fixed size)")
            kwargs.update(self.spec.pixel_budget(int(self.max_pixels)))
        images = [np.ascontiguousarray(f) for f in frames]
        try:
            inputs = self.processor(text=[text], images=images, return_tensors="pt", **kwargs)
        except ValueError as exc:  # e.g. placeholder count != frame count, or a frame it cannot resize
            raise StvgError(f"{self.family} processor: {exc}") from exc
        return {k: v for k, v in inputs.items() if isinstance(v, torch.Tensor)}

    @torch.inference_mode()
    def _encode_video(self, sampled: SampledVideo) -> _VideoPrefix:
        if len(sampled) == 0:
            raise StvgError(f"{sampled.info.path}: no frames were sampled")
        text = self.style.prefix([float(t) for t in sampled.timestamps])
        inputs = {k: v.to(self.device) for k, v in self._image_inputs(text, sampled.frames).items()}
        processed = self.spec.processed_size(inputs, self.image_processor) if self.spec.processed_size else None
        cache = None
        state: dict[str, Any] = {}
        if self.reuse_video_cache:
            # the prefix's next-token logits are never used: keep only the last position's
            out = self.model(**inputs, use_cache=True, logits_to_keep=1)
            cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
            state = {name: getattr(self.model.model, name) for name in self.spec.prefix_state}
        return _VideoPrefix(inputs, cache, processed, state)

    def encode_video(self, sampled: SampledVideo) -> _VideoPrefix:
        """The video prefix once (its KV cache when ``reuse_video_cache``), for :meth:`generate_text` (profiles)."""
        return self._encode_video(sampled)

    def question_inputs(self, prefix: _VideoPrefix, suffix: str) -> dict[str, Any]:
        """Model inputs for ``prefix + suffix``: per-token tensors extended by the question's tokens."""
        suffix_ids = self.tokenizer(suffix, add_special_tokens=False, return_tensors="pt")["input_ids"].to(self.device)
        inputs: dict[str, Any] = {}
        for key, value in prefix.inputs.items():
            if key == "input_ids":
                inputs[key] = torch.cat([value, suffix_ids], dim=1)
            elif key == "attention_mask":
                inputs[key] = torch.cat([value, torch.ones_like(suffix_ids, dtype=value.dtype)], dim=1)
            elif key in _PER_TOKEN:
                inputs[key] = torch.cat([value, torch.zeros_like(suffix_ids, dtype=value.dtype)], dim=1)
            elif key not in _PIXELS or prefix.cache is None:
                inputs[key] = value
        return inputs

    @torch.inference_mode()
    def generate_text(self, prefix: _VideoPrefix, suffix: str) -> str:
        """Greedy answer to ``prefix + suffix``; extends a copy of the cached video prefix when available."""
        kwargs = self.question_inputs(prefix, suffix)
        prompt_len = kwargs["input_ids"].shape[1]
        kwargs.update(max_new_tokens=self.max_new_tokens, do_sample=False, eos_token_id=self._end_ids or None,
                      pad_token_id=self._end_ids[-1] if self._end_ids else None)
        if self._suppress_ids:
            kwargs["suppress_tokens"] = self._suppress_ids
        if prefix.cache is not None:
            kwargs["cache"] = copy.deepcopy(prefix.cache)
            for name, value in prefix.state.items():  # e.g. mRoPE positions after the video, as for a full pass
                setattr(self.model.model, name, value)
        output = self.model.generate(**kwargs)
        text = self.tokenizer.decode(output[0, prompt_len:], skip_special_tokens=False)
        for marker in _END_MARKERS:
            text = text.replace(marker, "")
        return text.strip()

    def _answer(self, sampled: SampledVideo, prefix: _VideoPrefix, query: str, task: str, qid: str
                ) -> GroundingPrediction:
        info = sampled.info
        text = self.generate_text(prefix, self.style.suffix(query, info.duration_s, task))
        return answer_to_prediction(text, sampled, qid, task=task, coord_hint=self.style.coord_hint(),
                                    processed_size=prefix.processed_size, backend=f"prompted:{self.family}")


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


def build_tiny_prompted(folder: str | Path, seed: int = 0, family: str = "qwen2_5_vl") -> Path:
    """Write a tiny random-initialised checkpoint of ``family`` (config, safetensors, processor) to ``folder``.

    Built from code only (no hub), so ``PromptedGrounder.from_pretrained(folder)`` runs exactly as with
    a real checkpoint. Its answers are random text: it exercises the pipeline and the failure flags.
    """
    return get_family(family).build_tiny(folder, seed)
