"""A look at one query without the App: the video with GT (green) and predicted (red) tubes and a span bar.

Independent of FiftyOne (imports neither fiftyone nor torch): frames come from
:func:`stvg_plugin.video.sample_video`, MP4s are written by :func:`stvg_plugin.video.write_video`
(H.264, plays in browsers and the App), GIFs by Pillow.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from stvg_plugin.data import GroundingPrediction, GroundingQuery, atomic_path, seconds_to_span

GT_COLOR = (40, 220, 60)
PRED_COLOR = (235, 40, 40)
BAR_BG = (60, 60, 60)
CURSOR = (255, 255, 255)
SUFFIXES = (".mp4", ".gif")


def prediction_span(pred: GroundingPrediction | None, fps: float, num_frames: int) -> tuple[int, int] | None:
    """The predicted ``[start, end)`` in frames (a seconds-only answer mapped with ``seconds_to_span``)."""
    if pred is None:
        return None
    if pred.span_frames is not None:
        return int(pred.span_frames[0]), int(pred.span_frames[1])
    if pred.span_s is not None and fps > 0:
        sp = seconds_to_span(pred.span_s[0], pred.span_s[1], fps, num_frames)
        return sp.start, sp.end
    return None


def _draw_box(draw, box, sx: float, sy: float, color, width: int) -> None:
    x1, y1, x2, y2 = (float(v) for v in box)
    if not all(np.isfinite([x1, y1, x2, y2])):
        return
    draw.rectangle([x1 * sx, y1 * sy, x2 * sx, y2 * sy], outline=color, width=width)


def _bar(width: int, height: int, num_frames: int, gt: tuple[int, int] | None, pred: tuple[int, int] | None,
         cursor: int) -> np.ndarray:
    """Timeline strip: GT span on the top half, predicted span on the bottom half, a cursor at the frame."""
    bar = np.empty((height, width, 3), dtype=np.uint8)
    bar[:] = BAR_BG
    scale = width / max(num_frames, 1)
    half = height // 2
    for span, rows, color in ((gt, slice(1, half), GT_COLOR), (pred, slice(half, height - 1), PRED_COLOR)):
        if span is not None and span[1] > span[0]:
            a, b = int(round(span[0] * scale)), max(int(round(span[1] * scale)), int(round(span[0] * scale)) + 1)
            bar[rows, max(a, 0) : min(b, width)] = color
    c = min(int(cursor * scale), width - 1)
    bar[:, max(c - 1, 0) : c + 1] = CURSOR
    return bar


def iter_rendered(
    video: str | os.PathLike,
    query: GroundingQuery,
    prediction: GroundingPrediction | None,
    *,
    max_frames: int | None = 300,
    size: tuple[int, int] | None = None,
    bar_height: int = 12,
    line_width: int = 2,
) -> tuple[Iterator[np.ndarray], float]:
    """Annotated RGB frames (lazy) and the frame rate that keeps real time; see :func:`render_query`."""
    from PIL import Image, ImageDraw

    from stvg_plugin.video import sample_video

    sampled = sample_video(str(video), num_frames=None, max_frames=max_frames, size=size)
    info = sampled.info
    h, w = sampled.frames.shape[1:3]
    sx, sy = w / info.width, h / info.height
    gt_span = tuple(query.span_frames) if query.span_frames is not None else None
    pred_span = prediction_span(prediction, info.fps, info.num_frames)
    pred_boxes = prediction.boxes if prediction is not None else {}
    pad = (h + bar_height) % 2  # H.264 yuv420p wants even sizes

    def frames() -> Iterator[np.ndarray]:
        for arr, idx in zip(sampled.frames, sampled.indices):
            img = Image.fromarray(arr)
            draw = ImageDraw.Draw(img)
            f = int(idx)
            if f in query.boxes:
                _draw_box(draw, query.boxes[f], sx, sy, GT_COLOR, line_width)
            if f in pred_boxes:
                _draw_box(draw, pred_boxes[f], sx, sy, PRED_COLOR, line_width)
            out = np.concatenate([np.asarray(img), _bar(w, bar_height + pad, info.num_frames, gt_span, pred_span, f)])
            if out.shape[1] % 2:
                out = out[:, :-1]
            yield out

    fps = info.fps * len(sampled) / info.num_frames if info.num_frames else 10.0
    return frames(), max(fps, 0.5)


def render_query(
    video: str | os.PathLike,
    query: GroundingQuery,
    prediction: GroundingPrediction | None,
    out_path: str | os.PathLike,
    *,
    max_frames: int | None = 300,
    size: tuple[int, int] | None = None,
    bar_height: int = 12,
) -> Path:
    """Write ``out_path`` (``.mp4`` H.264 or ``.gif``): GT tube green, predicted tube red, span timeline below.

    ``max_frames`` caps the frames decoded (uniformly over the whole video, so memory stays bounded);
    ``size=(height, width)`` downscales while decoding. The clip plays at the original speed.
    """
    out = Path(out_path)
    if out.suffix.lower() not in SUFFIXES:
        raise ValueError(f"render output must end with one of {SUFFIXES}, got {out.name!r}")
    frames, fps = iter_rendered(video, query, prediction, max_frames=max_frames, size=size, bar_height=bar_height)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".mp4":
        from stvg_plugin.video import write_video

        write_video(out, frames, fps)
    else:
        from PIL import Image

        images = [Image.fromarray(f) for f in frames]
        with atomic_path(out) as tmp:
            images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                           duration=int(round(1000 / fps)), loop=0)
    return out
