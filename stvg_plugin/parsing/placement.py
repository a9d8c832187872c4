"""Placement: which original frame each box (or point) belongs to.

A box keyed by a time goes to the nearest listed frame, one keyed by a frame number to that listed
frame (after the prompt's ``index_base``), and unkeyed boxes are spread in order over the listed
frames of the span.
"""

from __future__ import annotations

import math

import numpy as np

from stvg_plugin.parsing.boxes import _clean, _to_pixels
from stvg_plugin.parsing.types import ParsedAnswer, _Context, _RawBox
from stvg_plugin.util.box_ops import BoxRepairStats


def _nearest_listed(t: float, ctx: _Context) -> int | None:
    if ctx.timestamps:
        dist = np.abs(np.asarray(ctx.timestamps, dtype=np.float64) - t)
        dist[~np.isfinite(dist)] = np.inf
        best = int(np.argmin(dist))  # ties -> the earlier frame
        return ctx.indices[best] if ctx.indices and math.isfinite(dist[best]) else None
    if ctx.fps > 0:
        f = round(t * ctx.fps)
        return min(max(f, 0), ctx.num_frames - 1) if ctx.num_frames else max(f, 0)
    return None


def _targets(span_frames: tuple[int, int] | None, ctx: _Context) -> list[int]:
    """Frames that unkeyed boxes are spread over: the listed frames (inside the span when known)."""
    if ctx.indices:
        inside = [f for f in ctx.indices if span_frames and span_frames[0] <= f < span_frames[1]]
        return inside or list(ctx.indices)
    if span_frames and span_frames[1] > span_frames[0]:
        return list(range(span_frames[0], span_frames[1]))
    return list(range(ctx.num_frames)) if ctx.num_frames else [0]


def _place_boxes(boxes: list[_RawBox], span_frames, ctx: _Context, out: ParsedAnswer):
    """Key boxes by original frame: named time -> nearest listed frame; number -> listed frame;
    unkeyed boxes spread in order over the listed frames of the span (one box -> all of them)."""
    by_frame: dict[int, list[float]] = {}
    by_time: dict[float, list[float]] = {}
    if not boxes:
        return by_frame, by_time
    boxes = sorted(boxes, key=lambda b: b.pos)
    stats = BoxRepairStats()
    pixels = _to_pixels(boxes, ctx, out)
    unkeyed: list[list[float]] = []
    dropped = 0
    for b, px in zip(boxes, pixels):
        clean = _clean(px, ctx, stats)
        if clean is None:
            continue
        frame: int | None = None
        if b.time_s is not None:
            by_time.setdefault(b.time_s, clean)
            frame = _nearest_listed(b.time_s, ctx)
        elif b.index is not None:
            i = b.index - ctx.hint.index_base
            if ctx.indices is not None:
                frame = ctx.indices[i] if 0 <= i < len(ctx.indices) else None
            else:
                frame = i if i >= 0 and (not ctx.num_frames or i < ctx.num_frames) else None
        else:
            unkeyed.append(clean)
            continue
        if frame is None:
            dropped += 1
        elif frame not in by_frame:
            by_frame[frame] = clean
    if unkeyed:
        targets = [f for f in _targets(span_frames, ctx) if f not in by_frame]
        m, n = len(targets), len(unkeyed)
        for j, f in enumerate(targets):
            by_frame[f] = list(unkeyed[min(j * n // m, n - 1)])
        if n > m:
            ctx.flags.append("extra_boxes_ignored")
    for key, count in stats.as_dict().items():
        if count:
            ctx.flags.append(f"{key}={count}")
    if dropped:
        ctx.flags.append(f"boxes_unplaced={dropped}")
    return dict(sorted(by_frame.items())), by_time


def _place_points(points: list[tuple[float, float]], span_frames, ctx: _Context) -> dict[int, tuple[float, float]]:
    """Molmo points are percent of the frame; spread in order like unkeyed boxes."""
    targets = _targets(span_frames, ctx)
    n = len(points)
    out: dict[int, tuple[float, float]] = {}
    for j, f in enumerate(targets):
        x, y = points[min(j * n // len(targets), n - 1)]
        out[f] = (min(max(x, 0.0), 100.0) / 100.0 * ctx.width, min(max(y, 0.0), 100.0) / 100.0 * ctx.height)
    return out
