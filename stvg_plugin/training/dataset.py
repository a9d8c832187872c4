"""Training samples over the unified JSONL: the Uni-STG task mix, frames sampled as at inference.

Why it looks like this:

* frames are sampled exactly as :class:`~stvg_plugin.models.grounder.Grounder` does at inference
  (``sample_video`` with the model's ``num_frames`` / ``frame_size``), so training never sees a
  frame layout the model will not meet again;
* the answer text is the model's own template (``processor.format_answer``), so the LM learns
  the text the decoding rules parse;
* ``tvg`` (span only) and ``rec`` (one frame, one box) samples can be derived from ``stvg``
  annotations, so the SpaceVLLM Uni-STG mix (notes §3) can be exercised on synthetic data;
* which sample a step sees is a pure function of ``(seed, step, slot)``: a resumed run sees the
  same data as an uninterrupted one without saving any sampler state.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from stvg_plugin.data import TASKS, GroundingQuery, Span
from stvg_plugin.models.decoding import segment_coverage
from stvg_plugin.util.box_ops import normalize_boxes
from stvg_plugin.video import PrefetchLoader, SampledVideo, VideoReadError, sample_video

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainSample:
    """One annotation as a training item; ``source_task`` is the task of the annotation it came from."""

    query: GroundingQuery
    task: str
    source_task: str

    @property
    def key(self) -> str:
        return f"{self.query.qid}#{self.task}"


@dataclass
class TrainExample:
    """Model inputs + the targets the trainer's losses need (all per sampled frame)."""

    key: str
    task: str
    inputs: Any  # GroundingInputs with its targets (the model computes the losses from them)
    gt_boxes: torch.Tensor  # [T, 4] normalised cxcywh
    box_mask: torch.Tensor  # [T] bool: frame in span with a GT box (box losses)
    relevance_target: torch.Tensor  # [T] float: frame inside the GT span, or the covered fraction (coverage)


@dataclass
class DataStats:
    """Counted, named problems; the trainer logs them and writes them to its summary."""

    skipped_videos: dict[str, str] = field(default_factory=dict)  # path -> reason
    skipped_samples: Counter = field(default_factory=Counter)  # reason -> count
    clipped_spans: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "skipped_videos": dict(self.skipped_videos),
            "num_skipped_videos": len(self.skipped_videos),
            "skipped_samples": dict(self.skipped_samples),
            "clipped_spans": self.clipped_spans,
        }


def expand_tasks(queries: Sequence[GroundingQuery], derive: Sequence[str] = ()) -> list[TrainSample]:
    """Every query as itself, plus ``tvg`` / ``rec`` samples derived from each ``stvg`` query if asked.

    A derived ``rec`` sample is one in-span sampled frame with its box (chosen per step).
    """
    bad = set(derive) - {"tvg", "rec"}
    if bad:
        raise ValueError(f"derive_tasks may contain only 'tvg' and 'rec', got {sorted(bad)}")
    out: list[TrainSample] = []
    for q in queries:
        out.append(TrainSample(q, q.task, q.task))
        if q.task == "stvg" and q.span_frames is not None:
            out.extend(TrainSample(q, task, "stvg") for task in derive)
    return out


def clip_span(q: GroundingQuery, num_frames: int) -> tuple[Span | None, bool]:
    """The GT span clipped to the decoded video; ``(None, _)`` when nothing of it is left."""
    if q.span_frames is None:
        return None, False
    span = Span(*q.span_frames)
    clipped = span.clip(num_frames)
    return (clipped if clipped.length > 0 else None), clipped != span


class FrameStore:
    """Sampled frames per video path: decoded once and kept in memory (``cache=True``), else on demand.

    The cache holds at most ``max_bytes`` of frames per process (a 7B preset's 64 frames of 384x384
    take ~28 MB per video): videos that do not fit are decoded again whenever drawn.
    An undecodable video is recorded in ``stats.skipped_videos`` (path -> reason) and never retried.
    """

    def __init__(self, num_frames: int, frame_size: tuple[int, int] | None, backend: str = "auto",
                 cache: bool = True, stats: DataStats | None = None, max_bytes: int | None = None):
        self.num_frames = num_frames
        self.frame_size = frame_size
        self.backend = backend
        self.cache = cache
        self.max_bytes = max_bytes
        self.cached_bytes = 0
        self.stats = stats if stats is not None else DataStats()
        self._frames: dict[str, SampledVideo] = {}

    def sample(self, path: str) -> SampledVideo:
        return sample_video(path, num_frames=self.num_frames, size=self.frame_size, backend=self.backend)

    def record(self, path: str, result: SampledVideo | VideoReadError) -> SampledVideo | None:
        if isinstance(result, VideoReadError):
            if path not in self.stats.skipped_videos:
                log.warning("skipping undecodable video %s: %s", path, result.reason)
            self.stats.skipped_videos[path] = result.reason
            return None
        if self.cache and path not in self._frames:
            size = int(result.frames.nbytes)
            if self.max_bytes is None or self.cached_bytes + size <= self.max_bytes:
                self._frames[path] = result
                self.cached_bytes += size
        return result

    def preload(self, paths: Sequence[str], num_workers: int = 2) -> None:
        """Decode every distinct video once, ahead of training (decoding dominates otherwise)."""
        todo = [p for p in dict.fromkeys(paths) if p not in self._frames and p not in self.stats.skipped_videos]
        for path, result in PrefetchLoader(todo, self.sample, num_workers=num_workers):
            self.record(path, result)

    def get(self, path: str) -> SampledVideo | None:
        if path in self.stats.skipped_videos:
            return None
        if path in self._frames:
            return self._frames[path]
        try:
            result: SampledVideo | VideoReadError = self.sample(path)
        except VideoReadError as exc:
            result = exc
        return self.record(path, result)

    def is_bad(self, path: str) -> bool:
        return path in self.stats.skipped_videos


class SampleStream:
    """Weighted task mix as a deterministic stream: item ``(step, slot)`` depends only on the seed.

    A task's probability is its weight over the total of tasks present; tasks with weight 0 or no
    samples are left out. Inside a task, samples are drawn uniformly.
    """

    def __init__(self, samples: Sequence[TrainSample], task_weights: Mapping[str, float], seed: int = 0):
        unknown = set(task_weights) - set(TASKS)
        if unknown:
            raise ValueError(f"task_weights has unknown tasks {sorted(unknown)}; known: {TASKS}")
        self.by_task: dict[str, list[int]] = {}
        for i, s in enumerate(samples):
            if float(task_weights.get(s.task, 0.0)) > 0:
                self.by_task.setdefault(s.task, []).append(i)
        if not self.by_task:
            present = sorted({s.task for s in samples})
            raise ValueError(f"no training samples: tasks present {present}, weights {dict(task_weights)}")
        self.tasks = sorted(self.by_task)
        w = np.array([float(task_weights[t]) for t in self.tasks])
        self.probs = w / w.sum()
        self.seed = int(seed)

    def draw(self, step: int, slot: int) -> tuple[int, np.random.Generator]:
        """Sample index for ``(step, slot)`` and a generator for its own choices (e.g. the rec frame)."""
        rng = np.random.default_rng([self.seed, step, slot])
        task = self.tasks[int(rng.choice(len(self.tasks), p=self.probs))]
        pool = self.by_task[task]
        return pool[int(rng.integers(len(pool)))], rng


def _box_at(q: GroundingQuery, frame: int) -> list[float] | None:
    return q.boxes.get(int(frame))


def build_example(
    model: Any, sample: TrainSample, sampled: SampledVideo, rng: np.random.Generator, stats: DataStats
) -> TrainExample | None:
    """Inputs + targets for one sample against its decoded frames; ``None`` (counted) when unusable."""
    q = sample.query
    info = sampled.info
    span, was_clipped = clip_span(q, int(info.num_frames))
    if span is None:
        stats.skipped_samples["span_outside_video" if q.span_frames is not None else "no_span"] += 1
        return None
    if was_clipped:
        stats.clipped_spans += 1
    idx = np.asarray(sampled.indices)
    in_span = (idx >= span.start) & (idx < span.end)
    w, h = int(info.width) or 1, int(info.height) or 1
    fps = float(info.fps) if info.fps > 0 else (q.fps or 1.0)
    proc = model.processor
    boxes = q.boxes if sample.task != "tvg" else {}
    if sample.task == "rec":
        usable = [k for k in np.nonzero(in_span)[0].tolist() if _box_at(q, idx[k]) is not None]
        if not usable:
            stats.skipped_samples["rec_without_box_on_sampled_frame"] += 1
            return None
        k = usable[int(rng.integers(len(usable)))]
        sampled = replace(sampled, frames=sampled.frames[k : k + 1], indices=idx[k : k + 1],
                          timestamps=np.asarray(sampled.timestamps)[k : k + 1])
        answer = None  # one image: no time to say; the decoder's box is the answer
        in_span = np.array([True])
    else:
        span_s = span.to_seconds(fps)
        text_boxes = None
        if sample.task == "stvg" and model.config.box_head == "text":
            text_boxes = {k: normalize_boxes(_box_at(q, idx[k]), w, h, clip=True).tolist()
                          for k in np.nonzero(in_span)[0].tolist()
                          if _box_at(q, idx[k]) is not None}
        answer = proc.format_answer(span_s, text_boxes)
    inputs = model.prepare_inputs(sampled, q.query, answer, span_frames=(span.start, span.end), boxes=boxes)
    target = in_span
    if sample.task != "rec" and model.config.relevance_target == "coverage":
        geometry = inputs.geometry  # the sampled frames' seconds and duration exactly as decoding reads them
        target = segment_coverage(geometry.timestamps, geometry.duration_s, (span.start, span.end), fps)
    inputs.relevance_target = torch.as_tensor(target, dtype=torch.float32)
    return TrainExample(sample.key, sample.task, inputs, inputs.gt_boxes, inputs.in_span, inputs.relevance_target)


class TrainData:
    """Samples + frames + stream: ``examples(step, n)`` gives the ``n`` examples of one optimizer step.

    Cached mode preloads every video once; streaming mode (``cache=False``, for large sets) decodes
    each step's videos ahead with a :class:`PrefetchLoader`. Unusable draws (bad video, empty
    span) are skipped and counted; the step then draws replacement slots so its size stays ``n``.
    """

    def __init__(self, model: Any, samples: Sequence[TrainSample], task_weights: Mapping[str, float], *,
                 seed: int = 0, cache: bool = True, num_workers: int = 2, backend: str = "auto",
                 max_redraws: int = 64, cache_max_bytes: int | None = None):
        cfg = model.config
        self.model = model
        self.stats = DataStats()
        size = tuple(int(v) for v in cfg.frame_size) if cfg.frame_size else None
        self.frames = FrameStore(int(cfg.num_frames), size, backend=backend, cache=cache, stats=self.stats,
                                 max_bytes=cache_max_bytes)
        self.cache = cache
        self.num_workers = num_workers
        self.max_redraws = max_redraws
        if cache:
            self.frames.preload([s.query.video for s in samples], num_workers=num_workers)
            bad = sum(1 for s in samples if self.frames.is_bad(s.query.video))
            if bad:
                self.stats.skipped_samples["undecodable_video"] += bad
            samples = [s for s in samples if not self.frames.is_bad(s.query.video)]
        self.samples = list(samples)
        self.stream = SampleStream(self.samples, task_weights, seed=seed)

    def _planned(self, step: int, n: int) -> Iterator[tuple[int, int, np.random.Generator]]:
        for slot in range(n + self.max_redraws):
            idx, rng = self.stream.draw(step, slot)
            yield slot, idx, rng

    def examples(self, step: int, n: int) -> list[TrainExample]:
        out: list[TrainExample] = []
        planned = self._planned(step, n)
        if self.cache:
            pairs = ((item, self.frames.get(self.samples[item[1]].query.video)) for item in planned)
        else:
            loader = PrefetchLoader(planned, lambda item: self.frames.sample(self.samples[item[1]].query.video),
                                    num_workers=self.num_workers, prefetch=max(n, 1))
            pairs = ((item, self.frames.record(self.samples[item[1]].query.video, res)) for item, res in loader)
        for (_slot, idx, rng), sampled in pairs:
            sample = self.samples[idx]
            if sampled is None:
                self.stats.skipped_samples["undecodable_video"] += 1
                continue
            ex = build_example(self.model, sample, sampled, rng, self.stats)
            if ex is not None:
                out.append(ex)
            if len(out) == n:
                break
        if len(out) < n:
            raise RuntimeError(f"step {step}: only {len(out)} of {n} usable samples in {n + self.max_redraws} draws")
        return out
