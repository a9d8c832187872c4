"""Time spans: the model core's answer template, and reading a span out of any answer.

``format_span_text`` is the one answer template the model core generates and trains on;
``parse_span_text`` reads it back. ``_pick_span`` finds the span of a free-form answer (tags, bins,
text pairs, start/end words, two numbers), in the unit the prompt asked for or the numbers imply, and
maps it to frames with :func:`stvg_plugin.data.seconds_to_span` (frames to seconds with
:meth:`stvg_plugin.data.Span.to_seconds`).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from stvg_plugin.data import Span, seconds_to_span
from stvg_plugin.parsing.patterns import (
    _ANY_TIME_RE,
    _END_RE,
    _PAIR_RE,
    _SPAN_RE,
    _START_RE,
    _T_TAG_RE,
    _TEMP_RE,
    _TIME_TAG_RE,
)
from stvg_plugin.parsing.types import _Context

SPAN_TEMPLATE = "from {t0:.1f} s to {t1:.1f} s"


def format_span_text(t0: float, t1: float) -> str:
    """The answer text of the model core, e.g. ``"from 12.0 s to 18.5 s"``."""
    return SPAN_TEMPLATE.format(t0=t0, t1=t1)


def parse_span_text(text: str) -> tuple[float, float] | None:
    """First ``a (s) to/-/and b (s)`` pair in ``text`` as ordered seconds, or ``None``."""
    if not isinstance(text, str):
        return None
    m = _SPAN_RE.search(text)
    if m is None:
        return None
    a, b = float(m.group(1)), float(m.group(2))
    if not (math.isfinite(a) and math.isfinite(b)):
        return None
    return (a, b) if a <= b else (b, a)


def _parse_time_token(tok: str) -> float | None:
    """``12.5`` / ``mm:ss`` / ``hh:mm:ss(.ff)`` -> seconds; ``None`` if not a finite time."""
    try:
        if ":" in tok:
            parts = [float(p) for p in tok.split(":")]
            if len(parts) > 3:
                return None
            v = 0.0
            for p in parts:
                v = v * 60.0 + p
        else:
            v = float(tok)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


@dataclass
class _TimePair:
    a: float
    b: float
    unit: str | None  # seconds | frames | fraction | percent | None (undecided)
    source: str
    decimals: bool = False


def _pick_span(json_span, text: str, ctx: _Context) -> tuple[tuple[float, float], tuple[int, int]] | None:
    pair = _find_time_pair(json_span, text)
    if pair is None:
        return None
    ctx.flags.append(f"span_from_{pair.source}")
    return _resolve_span(pair, ctx)


def _find_time_pair(json_span, text: str) -> _TimePair | None:
    if json_span is not None:
        return _TimePair(json_span[0], json_span[1], None, "json", decimals=True)
    m = _TIME_TAG_RE.search(text)
    if m:
        return _pair_from(m.group(1), "", m.group(2), "", "time_tag")
    tags = [_parse_time_token(t.group(1)) for t in itertools.islice(_T_TAG_RE.finditer(text), 2)]
    if len(tags) == 2 and None not in tags:
        return _TimePair(tags[0], tags[1], "seconds", "t_tags")
    temps = [int(t.group(1)) for t in itertools.islice(_TEMP_RE.finditer(text), 2)]
    if len(temps) == 2:
        return _TimePair(min(temps[0], 99) / 99.0, min(temps[1], 99) / 99.0, "fraction", "temp_bins")
    m = _PAIR_RE.search(text)
    if m:
        return _pair_from(m.group(1), m.group(2), m.group(3), m.group(4), "text_pair")
    ms, me = _START_RE.search(text), _END_RE.search(text)
    if ms and me:
        return _pair_from(ms.group(1), ms.group(2), me.group(1), me.group(2), "start_end")
    found = []
    for t in _ANY_TIME_RE.finditer(text):
        found.append(t)
        if len(found) > 2:
            return None
    if len(found) == 2:  # V-STaR rule: exactly two numbers are the span
        return _pair_from(found[0].group(1), found[0].group(2), found[1].group(1), found[1].group(2), "two_numbers")
    return None


def _pair_from(ta: str, ua: str, tb: str, ub: str, source: str) -> _TimePair | None:
    a, b = _parse_time_token(ta), _parse_time_token(tb)
    if a is None or b is None:
        return None
    units = {u.strip().lower() for u in (ua, ub) if u and u.strip()}
    unit = None
    if ":" in ta or ":" in tb or units - {"%"}:
        unit = "seconds"
    elif "%" in units:
        unit = "percent"
    return _TimePair(a, b, unit, source, decimals="." in ta or "." in tb)


def _resolve_span(p: _TimePair, ctx: _Context) -> tuple[tuple[float, float], tuple[int, int]] | None:
    a, b = p.a, p.b
    if b < a:
        a, b = b, a
        ctx.flags.append("span_swapped")
    unit = p.unit
    hinted = ctx.hint.time_unit
    if unit is None:
        unit = hinted or "seconds"
        if hinted is None and p.decimals and 0.0 <= a and b <= 1.0 and ctx.duration_s > 1.0:
            unit = "fraction"  # unconfirmed heuristic: Vidi writes "0.12-0.34"
    if unit == "percent":
        a, b, unit = a / 100.0, b / 100.0, "fraction"
    if unit == "fraction":
        a, b = a * ctx.duration_s, b * ctx.duration_s
        unit = "fraction"
    if unit == "frames":
        return _frames_span(a, b, ctx)
    dur = ctx.duration_s
    ca, cb = max(a, 0.0), max(b, 0.0)
    if dur > 0:
        ca, cb = min(ca, dur), min(cb, dur)
    if (ca, cb) != (a, b):
        ctx.flags.append("span_clamped")
    ctx.time_unit = unit
    if ctx.fps <= 0:
        return (ca, cb), None  # type: ignore[return-value]
    sp = seconds_to_span(ca, cb, ctx.fps, ctx.num_frames or None)
    return (ca, cb), (sp.start, sp.end)


def _frames_span(a: float, b: float, ctx: _Context) -> tuple[tuple[float, float], tuple[int, int]] | None:
    """Frame numbers -> original frames; with listed frames, ``[F[a], F[b] + 1)`` as TubeDETR does."""
    ia, ib = int(a) - ctx.hint.index_base, int(b) - ctx.hint.index_base
    if ctx.indices:
        last = len(ctx.indices) - 1
        ca, cb = min(max(ia, 0), last), min(max(ib, 0), last)
        if (ca, cb) != (ia, ib):
            ctx.flags.append("span_clamped")
        start, end = ctx.indices[ca], ctx.indices[cb] + 1
    else:
        start, end = max(ia, 0), max(ib, 0) + 1
        if ctx.num_frames:
            start, end = min(start, ctx.num_frames), min(end, ctx.num_frames)
    end = max(end, start)
    ctx.time_unit = "frames"
    if ctx.fps <= 0:
        return None, (start, end)  # type: ignore[return-value]
    return Span(start, end).to_seconds(ctx.fps), (start, end)
