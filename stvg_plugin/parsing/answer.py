"""``parse_answer``: the entry point that reads any model answer into a :class:`ParsedAnswer`.

It builds the context (duration, fps, listed frames, hint), picks the answer region, runs the box,
JSON and span stages in a fixed order (boxes are blanked out before times are read) and places the
boxes; any exception inside is turned into a flagged failure, never raised.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from stvg_plugin.parsing.boxes import _extract_plain_boxes, _extract_tagged_boxes
from stvg_plugin.parsing.json_answers import _extract_json
from stvg_plugin.parsing.patterns import _VTG_DIGIT_RE, _VTG_DIGITS
from stvg_plugin.parsing.placement import _place_boxes, _place_points
from stvg_plugin.parsing.region import _answer_region, _strip_think
from stvg_plugin.parsing.spans import _pick_span
from stvg_plugin.parsing.types import CoordHint, ParsedAnswer, _Context, _RawBox

# Longer answers are cut to their tail (answers come last); keeps worst-case time bounded.
MAX_ANSWER_CHARS = 2_000_000
MAX_BOXES = 5000  # more boxes than this are cut (in answer order) and flagged


def parse_answer(
    text: Any,
    *,
    duration_s: float,
    fps: float,
    num_frames: int,
    width: float,
    height: float,
    processed_size: tuple[int, int] | None = None,
    sampled_timestamps: Sequence[float] | None = None,
    sampled_indices: Sequence[int] | None = None,
    coord_hint: CoordHint | str | dict | None = None,
) -> ParsedAnswer:
    """Read a span and per-frame boxes out of any model answer; never raises on the text.

    ``processed_size`` is ``(height, width)`` of the frame the model saw (as ``sample_video(size=...)``),
    used to rescale pixel boxes to ``width`` x ``height``. ``sampled_timestamps`` / ``sampled_indices``
    describe the frames listed in the prompt: box times snap to the nearest listed frame and frame
    numbers index into them. ``coord_hint`` (see :class:`CoordHint`) resolves ambiguous units; a bad
    hint is a programming error and raises ``ValueError``.
    """
    hint = CoordHint.coerce(coord_hint)
    raw = text if isinstance(text, str) else ("" if text is None else _safe_str(text))
    out = ParsedAnswer(raw_text=raw)
    if not isinstance(text, str):
        return _fail(out, f"answer is not a string ({type(text).__name__})")
    try:
        ctx = _make_context(duration_s, fps, num_frames, width, height, processed_size,
                            sampled_timestamps, sampled_indices, hint)
        return _parse(raw, ctx, out)
    except Exception as exc:  # last-resort guard: a parser bug must not kill an evaluation run
        return _fail(out, f"parser error: {type(exc).__name__}: {exc}")


def _safe_str(obj: Any) -> str:
    try:
        return str(obj)
    except Exception:
        return ""


def _fail(out: ParsedAnswer, reason: str) -> ParsedAnswer:
    out.parse_failed = True
    out.reason = reason
    out.span_s = out.span_frames = None
    out.boxes = {}
    out.boxes_by_time = {}
    return out


def _finite(x: Any, default: float = 0.0) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return default
    return v if math.isfinite(v) else default


def _make_context(duration_s, fps, num_frames, width, height, processed_size, timestamps, indices, hint) -> _Context:
    fps_v = max(_finite(fps), 0.0)
    n = max(int(_finite(num_frames)), 0)
    dur = max(_finite(duration_s), 0.0)
    if dur == 0.0 and fps_v > 0 and n > 0:
        dur = n / fps_v
    proc = None
    if processed_size is not None:
        ph, pw = (_finite(v) for v in processed_size)
        proc = (ph, pw) if ph > 0 and pw > 0 else None
    ts = [_finite(t, math.nan) for t in timestamps] if timestamps is not None else None
    idx = [int(_finite(i)) for i in indices] if indices is not None else None
    if ts is not None and idx is None and fps_v > 0:
        idx = [min(max(round(t * fps_v), 0), max(n - 1, 0)) for t in ts]
    if idx is not None and ts is None and fps_v > 0:
        ts = [i / fps_v for i in idx]
    if ts is not None and idx is not None and len(ts) != len(idx):
        raise ValueError(f"{len(ts)} sampled_timestamps but {len(idx)} sampled_indices")
    return _Context(dur, fps_v, n, max(_finite(width), 0.0), max(_finite(height), 0.0), proc, ts, idx, hint)


def _parse(raw: str, ctx: _Context, out: ParsedAnswer) -> ParsedAnswer:
    text = raw
    if len(text) > MAX_ANSWER_CHARS:
        text = text[-MAX_ANSWER_CHARS:]
        ctx.flags.append("truncated")
    text = _answer_region(_strip_think(text))
    if "<TIME_" in text or "<time_" in text:
        text = _VTG_DIGIT_RE.sub(lambda m: _VTG_DIGITS[m.group(1).upper()], text)
    if not text.strip():
        out.flags = ctx.flags
        return _fail(out, "empty answer")

    raw_boxes: list[_RawBox] = []
    points: list[tuple[float, float]] = []
    text = _extract_tagged_boxes(text, raw_boxes, points, ctx)
    json_span, text = _extract_json(text, raw_boxes)
    text = _extract_plain_boxes(text, raw_boxes)
    if len(raw_boxes) > MAX_BOXES:
        ctx.flags.append(f"boxes_over_limit={len(raw_boxes) - MAX_BOXES}")
        raw_boxes = sorted(raw_boxes, key=lambda b: b.pos)[:MAX_BOXES]
    span = _pick_span(json_span, text, ctx)

    if span is not None:
        out.span_s, out.span_frames = span
        out.time_unit = ctx.time_unit
    out.boxes, out.boxes_by_time = _place_boxes(raw_boxes, out.span_frames, ctx, out)
    if points:
        out.points = _place_points(points, out.span_frames, ctx)
        ctx.flags.append("points_not_boxes")
    out.flags = ctx.flags
    has_span = out.span_s is not None or out.span_frames is not None
    if not has_span and not out.boxes and not out.points:
        return _fail(out, "no time span or box found" if not raw_boxes else "every box was invalid")
    missing = [name for name, ok in (("span", has_span), ("boxes", bool(out.boxes))) if not ok]
    if missing:
        out.reason = "no " + " and no ".join(missing) + " found" + (" (points only)" if out.points else "")
    return out
