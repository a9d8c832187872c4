"""From raw model outputs (answer text, per-sampled-frame boxes and relevance) to a prediction.

Pure numpy, no model: the span/box rules are tested on their own.

* text span: ``parse_span_text`` of the generated answer (seconds) -> frames via ``seconds_to_span``;
* relevance span (ours): the longest run of sampled frames with ``sigmoid(logit) > threshold``;
  its ends extend half-way to the neighbouring sampled frames (to 0 / the duration at the video
  ends), because each sampled frame stands for the segment around it;
* ``combined`` (ours): mean of the two estimates' endpoints when both exist, otherwise whichever
  exists (the relevance span when the text fails to parse);
* boxes: the sampled frames' boxes fill every frame of the span, linearly interpolated in frame
  index between sampled frames and held (nearest) beyond the first/last one, in original pixels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from stvg_plugin.data import GroundingPrediction, Span, seconds_to_span
from stvg_plugin.parsing import parse_answer, parse_span_text
from stvg_plugin.util import box_ops


@dataclass
class VideoGeometry:
    """What the decoding needs of a sampled video: source frame indices, seconds and the original size."""

    indices: np.ndarray
    timestamps: np.ndarray
    fps: float
    num_frames: int
    width: int
    height: int

    @property
    def duration_s(self) -> float:
        return (
            self.num_frames / self.fps if self.fps > 0 else float(self.timestamps[-1]) if len(self.timestamps) else 0.0
        )


def relevance_span(
    probs: np.ndarray, timestamps: np.ndarray, duration_s: float, threshold: float = 0.5
) -> tuple[float, float] | None:
    """Longest run of ``probs > threshold`` (first one on ties) as seconds, or ``None``."""
    above = np.asarray(probs) > threshold
    best: tuple[int, int] | None = None
    i = 0
    while i < len(above):
        if above[i]:
            j = i
            while j + 1 < len(above) and above[j + 1]:
                j += 1
            if best is None or (j - i) > (best[1] - best[0]):
                best = (i, j)
            i = j + 1
        else:
            i += 1
    if best is None:
        return None
    ts = np.asarray(timestamps, dtype=np.float64)
    i, j = best
    t0 = 0.0 if i == 0 else (ts[i - 1] + ts[i]) / 2.0
    t1 = duration_s if j == len(ts) - 1 else (ts[j] + ts[j + 1]) / 2.0
    return float(t0), float(max(t1, t0))


def choose_span(
    text_span: tuple[float, float] | None, rel_span: tuple[float, float] | None, source: str
) -> tuple[tuple[float, float] | None, str | None]:
    """The span (seconds) the switch asks for, and which estimate actually produced it."""
    if source == "text":
        return (text_span, "text") if text_span is not None else (rel_span, "relevance" if rel_span else None)
    if source == "relevance":
        return (rel_span, "relevance") if rel_span is not None else (text_span, "text" if text_span else None)
    if text_span is not None and rel_span is not None:
        return ((text_span[0] + rel_span[0]) / 2.0, (text_span[1] + rel_span[1]) / 2.0), "combined"
    if text_span is not None:
        return text_span, "text"
    if rel_span is not None:
        return rel_span, "relevance"
    return None, None


def fill_span_boxes(
    span: Span, sample_frames: np.ndarray, boxes_xyxy: np.ndarray, width: int, height: int
) -> dict[int, list[float]]:
    """Interpolate per-sampled-frame xyxy boxes (absolute px) onto every frame of ``span``."""
    frames = np.asarray(sample_frames, dtype=np.float64)
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    if span.length == 0 or len(frames) == 0:
        return {}
    order = np.argsort(frames, kind="stable")
    frames, boxes = frames[order], boxes[order]
    frames, first = np.unique(frames, return_index=True)  # a short video repeats indices: keep the first
    boxes = boxes[first]
    targets = np.arange(span.start, span.end, dtype=np.float64)
    filled = np.stack([np.interp(targets, frames, boxes[:, k]) for k in range(4)], axis=-1)
    filled[:, [0, 2]] = np.clip(filled[:, [0, 2]], 0.0, float(width))
    filled[:, [1, 3]] = np.clip(filled[:, [1, 3]], 0.0, float(height))
    clean, valid = box_ops.sanitize_box_array(filled)  # the rule of ``sanitize_box``, one pass
    return {f: box for f, box, ok in zip(targets.astype(int).tolist(), clean.tolist(), valid.tolist()) if ok}


def build_prediction(
    qid: str,
    text: str,
    geometry: VideoGeometry,
    *,
    span_source: str,
    decoder_boxes_cxcywh: np.ndarray | None,
    relevance_logits: np.ndarray | None,
    text_boxes_xyxy: Mapping[int, list[float]] | None = None,
    threshold: float = 0.5,
) -> GroundingPrediction:
    """Never raises on odd text: no span at all -> ``parse_failed`` with empty boxes.

    ``text_boxes_xyxy`` (box_head=text) are normalised xyxy keyed by sampled-frame position; when
    given they replace the decoder boxes.
    """
    text_span = parse_span_text(text)
    rel_span = None
    probs = None
    if relevance_logits is not None:
        probs = 1.0 / (1.0 + np.exp(-np.asarray(relevance_logits, dtype=np.float64)))
        rel_span = relevance_span(probs, geometry.timestamps, geometry.duration_s, threshold)
    if text_span is not None and geometry.duration_s > 0:
        text_span = (min(max(text_span[0], 0.0), geometry.duration_s), min(max(text_span[1], 0.0), geometry.duration_s))
    span_s, used = choose_span(text_span, rel_span, span_source)
    extra: dict = {
        "text_span_s": list(text_span) if text_span else None,
        "relevance_span_s": list(rel_span) if rel_span else None,
    }
    if span_s is None:
        return GroundingPrediction(qid=qid, raw_text=text, parse_failed=True, extra=extra)
    fps = geometry.fps if geometry.fps > 0 else 1.0
    span = seconds_to_span(span_s[0], span_s[1], fps, geometry.num_frames or None)
    if text_boxes_xyxy is not None:
        keys = sorted(k for k in text_boxes_xyxy if 0 <= k < len(geometry.indices))
        frames = np.asarray([geometry.indices[k] for k in keys])
        norm = np.asarray([text_boxes_xyxy[k] for k in keys], dtype=np.float64).reshape(-1, 4)
    else:
        frames = np.asarray(geometry.indices)
        norm = box_ops.cxcywh_to_xyxy(np.asarray(decoder_boxes_cxcywh, dtype=np.float64).reshape(-1, 4))
    boxes = fill_span_boxes(
        span, frames, box_ops.scale_boxes(norm, geometry.width, geometry.height), geometry.width, geometry.height
    )
    confidence = (
        float(probs[(geometry.timestamps >= span_s[0]) & (geometry.timestamps <= span_s[1])].mean())
        if probs is not None and np.any((geometry.timestamps >= span_s[0]) & (geometry.timestamps <= span_s[1]))
        else None
    )
    return GroundingPrediction(
        qid=qid,
        span_frames=(span.start, span.end),
        span_s=(float(span_s[0]), float(span_s[1])),
        boxes=boxes,
        raw_text=text,
        span_source=used,
        confidence=confidence,
        extra=extra,
    )


def fill_prediction_boxes(prediction: GroundingPrediction, num_frames: int, width: int, height: int) -> GroundingPrediction:
    """Fill the boxes a text answer gave at some frames over every frame of its span, in place.

    Prompted models are asked for one box per listed frame or per second, not per video frame: the
    frames between them are interpolated linearly and held (nearest) beyond the first/last one, the
    rule of :func:`fill_span_boxes` (as STCAT fills). A prediction without span or boxes is unchanged.
    """
    if prediction.span_frames is None or not prediction.boxes:
        return prediction
    start, end = (int(v) for v in prediction.span_frames)
    end = min(end, num_frames) if num_frames else end
    frames = sorted(prediction.boxes)
    boxes = np.asarray([prediction.boxes[f] for f in frames], dtype=np.float64)
    filled = fill_span_boxes(Span(start, max(end, start)), np.asarray(frames), boxes, width, height)
    if filled:
        prediction.boxes = filled
        prediction.extra["boxes_filled"] = "linear"
    return prediction


def answer_to_prediction(text: str, sampled: Any, qid: str, *, task: str, coord_hint: Any,
                         processed_size: tuple[int, int] | None, backend: str) -> GroundingPrediction:
    """A text answer about the frames of ``sampled`` (a :class:`~stvg_plugin.video.SampledVideo`) -> prediction.

    One rule for every text backend (in-process prompted, served): parse in the video's frames and
    seconds (``processed_size``: the frame size the model saw, for pixel answers), drop the span for
    ``rec``, otherwise fill the boxes given at some frames over the span (:func:`fill_prediction_boxes`).
    """
    info = sampled.info
    parsed = parse_answer(
        text, duration_s=info.duration_s, fps=info.fps, num_frames=info.num_frames, width=info.width,
        height=info.height, processed_size=processed_size, sampled_timestamps=sampled.timestamps.tolist(),
        sampled_indices=sampled.indices.tolist(), coord_hint=coord_hint,
    )
    pred = parsed.to_prediction(qid)
    if task == "rec":
        pred.span_frames = pred.span_s = None
    else:
        fill_prediction_boxes(pred, info.num_frames, info.width, info.height)
    pred.extra["backend"] = backend
    return pred
