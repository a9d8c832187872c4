"""Boxes: finding them in the text (tagged formats with their own scale, then bare coordinate lists)
and converting each to pixels of the original frame, repaired and clipped by the one box rule
(:func:`stvg_plugin.util.box_ops.sanitize_box`).
"""

from __future__ import annotations

import math
import re

from stvg_plugin.parsing.patterns import (
    _BOX_RE,
    _CSV_ROW_RE,
    _DET_RE,
    _INDEXED_BOX_RE,
    _LLAVA_ST_BOX_RE,
    _OPEN_O3_RE,
    _PAIR_BOX_RE,
    _PAREN_BOX_RE,
    _POINT_ATTR_RE,
    _POINT_TAG_RE,
    _QWEN_BOX_RE,
    _TIMED_BOX_RE,
)
from stvg_plugin.parsing.region import _blank
from stvg_plugin.parsing.spans import _parse_time_token
from stvg_plugin.parsing.types import ParsedAnswer, _Context, _RawBox
from stvg_plugin.util.box_ops import BoxRepairStats, sanitize_box


def _f(s: str) -> float:
    v = float(s)
    return v if math.isfinite(v) else math.nan


def _take(text: str, regex: re.Pattern, build, boxes: list[_RawBox]) -> str:
    spans = []
    for m in regex.finditer(text):
        boxes.append(build(m))
        spans.append((m.start(), m.end()))
    return _blank(text, spans)


def _extract_tagged_boxes(text: str, boxes: list[_RawBox], points: list[tuple[float, float]], ctx: _Context) -> str:
    """Boxes in formats with their own markers (and intrinsic scales), blanked out of the text."""

    def take(regex: re.Pattern, build) -> None:
        nonlocal text
        text = _take(text, regex, build, boxes)

    take(_CSV_ROW_RE, lambda m: _RawBox(_f4(m, 2), "csv", time_s=_parse_time_token(m.group(1)), pos=m.start()))
    take(_OPEN_O3_RE, lambda m: _RawBox(_f4(m, 1), "open_o3", pos=m.start(),
                                        time_s=_parse_time_token(m.group(5)) if m.group(5) else None))
    take(_QWEN_BOX_RE, lambda m: _RawBox(_f4(m, 1), "qwen_box", scale="permille", pos=m.start()))
    det_spans = []
    for m in _DET_RE.finditer(text):
        for j, b in enumerate(_BOX_RE.finditer(m.group(1))):
            boxes.append(_RawBox(_f4(b, 1), "det", scale="permille999", pos=m.start() + j))
        det_spans.append((m.start(), m.end()))
    text = _blank(text, det_spans)
    take(_LLAVA_ST_BOX_RE, lambda m: _RawBox(_f4(m, 2), "llava_st", scale="bins99", pos=m.start(),
                                             time_s=_bin_time(m.group(1), ctx) if m.group(1) else None))
    point_spans = []
    for m in _POINT_TAG_RE.finditer(text):
        attrs: dict[str, dict[str, float]] = {}
        for a in _POINT_ATTR_RE.finditer(m.group(1)):
            attrs.setdefault(a.group(2), {})[a.group(1).lower()] = _f(a.group(3))
        for _, xy in sorted(attrs.items()):
            if "x" in xy and "y" in xy and math.isfinite(xy["x"]) and math.isfinite(xy["y"]):
                points.append((xy["x"], xy["y"]))
        point_spans.append((m.start(), m.end()))
    return _blank(text, point_spans)


def _extract_plain_boxes(text: str, boxes: list[_RawBox]) -> str:
    """Bare coordinate lists, optionally keyed by a time (``3.5s: [..]``) or frame number (``k. [..]``)."""

    def take(regex: re.Pattern, build) -> None:
        nonlocal text
        text = _take(text, regex, build, boxes)

    take(_TIMED_BOX_RE, lambda m: _RawBox(_f4(m, 2), "timed", time_s=_parse_time_token(m.group(1)), pos=m.start()))
    take(_INDEXED_BOX_RE, lambda m: _RawBox(_f4(m, 3), "indexed", index=int(m.group(1) or m.group(2)), pos=m.start()))
    take(_BOX_RE, lambda m: _RawBox(_f4(m, 1), "list", pos=m.start()))
    take(_PAIR_BOX_RE, lambda m: _RawBox(_f4(m, 1), "corner_pairs", pos=m.start()))
    take(_PAREN_BOX_RE, lambda m: _RawBox(_f4(m, 1), "paren", pos=m.start()))
    return text


def _f4(m: re.Match, first: int) -> tuple[float, float, float, float]:
    return tuple(_f(m.group(first + k)) for k in range(4))  # type: ignore[return-value]


def _bin_time(token: str, ctx: _Context) -> float:
    return min(int(token), 99) / 99.0 * ctx.duration_s


def _to_pixels(boxes: list[_RawBox], ctx: _Context, out: ParsedAnswer) -> list[list[float] | None]:
    """Decide each box's scale and convert to original-frame pixels (unsanitised)."""
    auto = [b for b in boxes if b.scale is None]
    auto_scale = None
    if auto:  # the notes' rule: all <= 1 relative; else the hinted scale (per-mille etc.); else pixels
        vals = [abs(v) for b in auto for v in b.values if math.isfinite(v)]
        if vals and max(vals) <= 1.0:
            auto_scale = "relative"
        elif ctx.hint.box_scale == "permille" and vals and max(vals) > 1000.0:
            auto_scale = "pixels"
        else:
            auto_scale = ctx.hint.box_scale or "pixels"
    out.box_scale = auto_scale or (boxes[0].scale if boxes else None)
    if auto_scale:
        ctx.flags.append(f"box_scale_{auto_scale}")
    W, H = ctx.width, ctx.height
    result: list[list[float] | None] = []
    yx_first = ctx.hint.box_order == "yxyx"
    for b in boxes:
        scale = b.scale or auto_scale
        x1, y1, x2, y2 = b.values
        if yx_first and b.scale is None:  # the prompt asked for [ymin, xmin, ymax, xmax]
            y1, x1, y2, x2 = b.values
        if scale == "pixels":
            if ctx.processed_size is not None:
                ph, pw = ctx.processed_size
                sx, sy = (W / pw if W else 1.0), (H / ph if H else 1.0)
            else:
                sx = sy = 1.0
        else:
            div = {"relative": 1.0, "permille": 1000.0, "permille999": 999.0, "bins99": 99.0, "percent": 100.0}[scale]
            if not (W and H):
                result.append(None)
                continue
            sx, sy = W / div, H / div
        if (sx, sy) != (1.0, 1.0) and "coords_rescaled" not in ctx.flags:
            ctx.flags.append("coords_rescaled")  # not in pixels of the original frame: counted by `evaluate`
        result.append([x1 * sx, y1 * sy, x2 * sx, y2 * sy])
    return result


def _clean(box: list[float] | None, ctx: _Context, stats: BoxRepairStats) -> list[float] | None:
    if box is None:
        stats.rejected_nan += 1
        return None
    b = sanitize_box(box, stats)
    if b is None:
        return None
    if ctx.width and ctx.height:
        clipped = [min(max(b[0], 0.0), ctx.width), min(max(b[1], 0.0), ctx.height),
                   min(max(b[2], 0.0), ctx.width), min(max(b[3], 0.0), ctx.height)]
        if clipped != b:
            ctx.flags.append("box_clipped")
        b = sanitize_box(clipped, stats)
    return b
