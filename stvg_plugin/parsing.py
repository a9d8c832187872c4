"""Parsing model answers (spans and boxes) into predictions; never raises on odd text.

``format_span_text`` is the one answer template the model core generates and trains on;
``parse_span_text`` reads it back. ``parse_answer`` reads the free-text, tag and JSON answers of
off-the-shelf video LLMs (every format in ``notes/model.md`` §6) into a :class:`ParsedAnswer` in the
project's conventions (0-based frames, end-exclusive spans, absolute-pixel xyxy of the original video).

Robustness rules: every regex is linear-time (number starts are guarded by a look-behind and use
possessive quantifiers, free-text gaps are bounded), JSON is read with ``json.loads`` inside
``try``, nothing is ever ``eval``-ed, and any input (not only ``str``) yields a result or a flagged
failure, never an exception.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stvg_plugin.data import GroundingPrediction, seconds_to_span
from stvg_plugin.util.box_ops import BoxRepairStats, sanitize_box

SPAN_TEMPLATE = "from {t0:.1f} s to {t1:.1f} s"

# Longer answers are cut to their tail (answers come last); keeps worst-case time bounded.
MAX_ANSWER_CHARS = 2_000_000
_JSON_MAX_CHARS = 200_000
_JSON_MAX_DEPTH = 32
MAX_BOXES = 5000

# ----------------------------------------------------------------------------- regex atoms
# A number starts only where no digit/dot precedes it, so a long digit run is scanned once.
_UNUM = r"(?<![\w.])\d++(?:\.\d++)?+"
_SNUM = r"(?<![\w.])-?+\d++(?:\.\d++)?+"
_CLOCK = r"(?<![\w.:])\d{1,2}:\d{2}(?::\d{2})?+(?:\.\d++)?+(?![\d:])"
_TIME = rf"(?:{_CLOCK}|{_UNUM}(?![\d:]))"
_UNIT = r"(?:\s{0,3}(?:seconds?|secs?|s|%)(?![a-z]))?+"
_SEP = r"\s{0,5},\s{0,5}"
_BOX4 = rf"\[\s{{0,20}}({_SNUM}){_SEP}({_SNUM}){_SEP}({_SNUM}){_SEP}({_SNUM})\s{{0,20}}\]"
_I = re.IGNORECASE

_SPAN_RE = re.compile(rf"({_UNUM})\s{{0,5}}s?\s{{0,5}}(?:to|-|–|and)\s{{0,5}}({_UNUM})\s{{0,5}}s?", _I)

_THINK_TAG_RE = re.compile(r"<(/?)think>", _I)
_ANSWER_TAG_RE = re.compile(r"<(/?)answer>", _I)
_VTG_DIGIT_RE = re.compile(r"<TIME_(ZERO|ONE|TWO|THREE|FOUR|FIVE|SIX|SEVEN|EIGHT|NINE|DOT)>", _I)
_VTG_DIGITS = {"ZERO": "0", "ONE": "1", "TWO": "2", "THREE": "3", "FOUR": "4", "FIVE": "5", "SIX": "6",
               "SEVEN": "7", "EIGHT": "8", "NINE": "9", "DOT": "."}
_FENCE_RE = re.compile(r"```(?:json)?+([^`]{1,200000})```", _I)

# Box formats (each match is blanked out of the text before times are read).
_CSV_ROW_RE = re.compile(
    rf"^[ \t]{{0,20}}({_TIME})[ \t]{{0,3}}s?[ \t]{{0,3}},[ \t]{{0,5}}({_SNUM})[ \t]{{0,5}},[ \t]{{0,5}}({_SNUM})"
    rf"[ \t]{{0,5}},[ \t]{{0,5}}({_SNUM})[ \t]{{0,5}},[ \t]{{0,5}}({_SNUM})[ \t]{{0,20}}$",
    re.MULTILINE,
)
_OPEN_O3_RE = re.compile(
    rf"(?:<obj>[^<]{{0,200}}</obj>\s{{0,5}})?<box>\s{{0,5}}{_BOX4}\s{{0,5}}</box>"
    rf"(?:\s{{0,5}}at\s{{0,5}}<t>\s{{0,5}}({_TIME})\s{{0,5}}</t>\s{{0,3}}s?)?",
    _I,
)
_QWEN_BOX_RE = re.compile(
    rf"(?:<\|object_ref_start\|>[^<]{{0,200}}<\|object_ref_end\|>\s{{0,5}})?<\|box_start\|>\s{{0,5}}"
    rf"\(\s{{0,5}}({_SNUM}){_SEP}({_SNUM})\s{{0,5}}\){_SEP}\(\s{{0,5}}({_SNUM}){_SEP}({_SNUM})\s{{0,5}}\)"
    rf"\s{{0,5}}<\|box_end\|>",
)
_DET_RE = re.compile(r"(?:<\|ref\|>[^<]{0,200}<\|/ref\|>\s{0,5})?<\|det\|>([^<]{0,20000})<\|/det\|>")
_LLAVA_ST_BOX_RE = re.compile(
    r"(?:<TEMP-(\d{1,3})>\s{0,5})?<WIDTH-(\d{1,3})>\s{0,5}<HEIGHT-(\d{1,3})>\s{0,5}"
    r"<WIDTH-(\d{1,3})>\s{0,5}<HEIGHT-(\d{1,3})>"
)
_POINT_TAG_RE = re.compile(r"<points?\b([^<>]{0,2000})>(?:[^<]{0,200}</points?>)?", _I)
_POINT_ATTR_RE = re.compile(rf"\b([xy])(\d{{0,3}})\s{{0,3}}=\s{{0,3}}[\"']?({_UNUM})", _I)
_TIMED_BOX_RE = re.compile(
    rf"(?:<t>\s{{0,5}})?({_TIME})\s{{0,3}}(?:</t>\s{{0,3}})?(?:seconds?|secs?|s)(?![a-z])\s{{0,3}}[:=\-–]\s{{0,5}}{_BOX4}",
    _I,
)
_INDEXED_BOX_RE = re.compile(
    rf"(?:\bframe\s{{0,3}}(\d{{1,6}})\s{{0,3}}[.:)\-–=]?|(?<![\w.])(\d{{1,6}})\s{{0,3}}[.:)])\s{{0,5}}{_BOX4}", _I
)
_BOX_RE = re.compile(_BOX4)
_PAIR_BOX_RE = re.compile(
    rf"\(\s{{0,5}}({_SNUM}){_SEP}({_SNUM})\s{{0,5}}\){_SEP}\(\s{{0,5}}({_SNUM}){_SEP}({_SNUM})\s{{0,5}}\)"
)
_PAREN_BOX_RE = re.compile(rf"\(\s{{0,5}}({_SNUM}){_SEP}({_SNUM}){_SEP}({_SNUM}){_SEP}({_SNUM})\s{{0,5}}\)")

# Time formats, tried in this order on the text left after boxes are blanked out.
_TIME_TAG_RE = re.compile(rf"<time>\s{{0,5}}({_TIME})\s{{0,5}}(?:-|–|to|,|and)\s{{0,5}}({_TIME})\s{{0,5}}</time>", _I)
_T_TAG_RE = re.compile(rf"<t>\s{{0,5}}({_TIME})\s{{0,5}}</t>", _I)
_TEMP_RE = re.compile(r"<TEMP-(\d{1,3})>")
_PAIR_RE = re.compile(
    rf"({_TIME})({_UNIT})\s{{0,5}}(?:(?:to|until|till|through|and)\b|-|–|—|~)\s{{0,5}}({_TIME})({_UNIT})", _I
)
_START_RE = re.compile(rf"\bstart[a-z]{{0,6}}\b[^0-9\n]{{0,30}}?({_TIME})({_UNIT})", _I)
_END_RE = re.compile(rf"\b(?:end|finish)[a-z]{{0,6}}\b[^0-9\n]{{0,30}}?({_TIME})({_UNIT})", _I)
_ANY_TIME_RE = re.compile(rf"({_TIME})({_UNIT})", _I)

TIME_UNITS = ("seconds", "frames", "fraction")
BOX_SCALES = ("relative", "permille", "pixels", "percent")
BOX_ORDERS = ("xyxy", "yxyx")


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


# ----------------------------------------------------------------------------- public types


@dataclass(frozen=True)
class CoordHint:
    """What the prompt asked for, so ambiguous numbers are read in the right unit.

    ``time_unit``: ``seconds`` | ``frames`` (indices of the listed sampled frames) | ``fraction``
    (of the duration) | ``None`` (auto: seconds, or fractions when both ends are decimals in [0, 1]).
    ``box_scale``: ``relative`` (0-1) | ``permille`` (0-1000, Qwen2-VL style) | ``pixels`` (of the
    processed frame) | ``percent`` | ``None`` (auto). ``index_base``: 1 when the prompt numbered frames
    from 1 ("Frame 1 at 0.50 s"). ``box_order``: ``xyxy`` or ``yxyx`` (Gemini's [ymin, xmin, ymax, xmax]).
    """

    time_unit: str | None = None
    box_scale: str | None = None
    index_base: int = 0
    box_order: str = "xyxy"

    @classmethod
    def coerce(cls, hint: CoordHint | str | dict | None) -> CoordHint:
        """Accept a ``CoordHint``, a dict of its fields, or a string like ``"frames+permille"``."""
        if hint is None:
            return cls()
        if isinstance(hint, CoordHint):
            return hint
        if isinstance(hint, dict):
            return cls(**hint)._checked()
        aliases = {"qwen2vl": "permille", "qwen2-vl": "permille", "per-mille": "permille", "seconds": "seconds",
                   "frame": "frames", "index": "frames", "fractions": "fraction", "normalized": "relative"}
        time_unit = box_scale = None
        index_base = 0
        box_order = "xyxy"
        for token in re.split(r"[+,\s]+", str(hint).strip().lower()):
            if not token:
                continue
            token = aliases.get(token, token)
            if token in BOX_ORDERS:
                box_order = token
            elif token in TIME_UNITS:
                time_unit = token
            elif token in BOX_SCALES:
                box_scale = token
            elif token in ("index_base=1", "one_based", "1-based"):
                index_base = 1
            else:
                raise ValueError(f"unknown coord_hint token {token!r}; use {TIME_UNITS}, {BOX_SCALES} or 'one_based'")
        return cls(time_unit, box_scale, index_base, box_order)

    def _checked(self) -> CoordHint:
        if self.time_unit not in (None, *TIME_UNITS):
            raise ValueError(f"coord_hint time_unit must be one of {TIME_UNITS}, got {self.time_unit!r}")
        if self.box_scale not in (None, *BOX_SCALES):
            raise ValueError(f"coord_hint box_scale must be one of {BOX_SCALES}, got {self.box_scale!r}")
        if self.box_order not in BOX_ORDERS:
            raise ValueError(f"coord_hint box_order must be one of {BOX_ORDERS}, got {self.box_order!r}")
        return self


@dataclass
class ParsedAnswer:
    """One answer read into project conventions.

    ``boxes`` are absolute-pixel xyxy of the original video keyed by 0-based frame; ``boxes_by_time``
    keeps the same boxes keyed by the second the model named (when it named one), for scorers that key
    by timestamp (V-STaR). ``points`` holds point answers (Molmo), which are not boxes. ``parse_failed``
    is set when nothing usable was found; ``reason`` says why, or which part is missing.
    """

    span_s: tuple[float, float] | None = None
    span_frames: tuple[int, int] | None = None
    boxes: dict[int, list[float]] = field(default_factory=dict)
    parse_failed: bool = False
    reason: str | None = None
    raw_text: str = ""
    boxes_by_time: dict[float, list[float]] = field(default_factory=dict)
    points: dict[int, tuple[float, float]] = field(default_factory=dict)
    time_unit: str | None = None
    box_scale: str | None = None
    flags: list[str] = field(default_factory=list)

    @property
    def boxes_by_frame(self) -> dict[int, list[float]]:
        return self.boxes

    def to_prediction(self, qid: str) -> GroundingPrediction:
        extra: dict[str, Any] = {}
        if self.flags:
            extra["parse_flags"] = list(self.flags)
        if self.reason:
            extra["parse_reason"] = self.reason
        if self.points:
            extra["points"] = {str(k): list(v) for k, v in sorted(self.points.items())}
        return GroundingPrediction(
            qid=qid,
            span_frames=self.span_frames,
            span_s=self.span_s,
            boxes={k: list(v) for k, v in self.boxes.items()},
            raw_text=self.raw_text,
            parse_failed=self.parse_failed,
            span_source="text" if self.span_s is not None or self.span_frames is not None else None,
            extra=extra,
        )


@dataclass
class _RawBox:
    values: tuple[float, float, float, float]
    kind: str
    scale: str | None = None  # intrinsic scale of the format; None = decide from the numbers
    time_s: float | None = None
    index: int | None = None
    pos: int = 0


@dataclass
class _Context:
    duration_s: float
    fps: float
    num_frames: int
    width: float
    height: float
    processed_size: tuple[float, float] | None
    timestamps: list[float] | None
    indices: list[int] | None
    hint: CoordHint
    flags: list[str] = field(default_factory=list)
    time_unit: str | None = None


# ----------------------------------------------------------------------------- entry point


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


# ----------------------------------------------------------------------------- answer region


def _strip_think(text: str) -> str:
    """Drop ``<think>...</think>``; a lone ``</think>`` drops everything before it (think opened in the
    prompt); an unclosed ``<think>`` drops the rest unless nothing else is left (answer cut mid-thought)."""
    if "think>" not in text.lower():
        return text
    pieces: list[str] = []
    pos = 0
    open_at: int | None = None
    for m in _THINK_TAG_RE.finditer(text):
        if m.group(1):  # closing tag
            if open_at is None:
                pieces = []  # everything so far was thinking
            open_at = None
            pos = m.end()
        elif open_at is None:
            pieces.append(text[pos:m.start()])
            open_at = m.end()
    if open_at is None:
        pieces.append(text[pos:])
    kept = "".join(pieces)
    if not kept.strip() and open_at is not None:
        return text[open_at:]
    return kept


def _answer_region(text: str) -> str:
    """Content of the last non-empty ``<answer>`` block (unclosed: to the end), else the whole text."""
    if "answer>" not in text.lower():
        return text
    blocks: list[str] = []
    start: int | None = None
    for m in _ANSWER_TAG_RE.finditer(text):
        if m.group(1):
            if start is not None:
                blocks.append(text[start:m.start()])
            start = None
        else:
            if start is not None:
                blocks.append(text[start:m.start()])
            start = m.end()
    if start is not None:
        blocks.append(text[start:])
    for block in reversed(blocks):
        if block.strip():
            return block
    return text


def _blank(text: str, spans: list[tuple[int, int]]) -> str:
    """Replace spans by a separator of equal length, so positions (box order) survive."""
    if not spans:
        return text
    parts: list[str] = []
    pos = 0
    for s, e in sorted(spans):
        if s < pos:
            continue
        parts.append(text[pos:s])
        parts.append(";" + " " * (e - s - 1) if e > s else "")
        pos = e
    parts.append(text[pos:])
    return "".join(parts)


# ----------------------------------------------------------------------------- JSON answers

_SPAN_KEYS = ("relevant_windows", "windows", "time_range", "timerange", "span", "time_span", "segment",
              "timestamps", "window", "time")
_BOX_KEYS = ("bbox_2d", "bbox", "box", "box_2d", "bounding_box")
_BOX_TIME_KEYS = ("time", "timestamp", "t", "second", "seconds", "time_s", "sec")
_BOX_INDEX_KEYS = ("frame", "frame_index", "frame_idx", "frame_id", "index")


def _extract_json(text: str, boxes: list[_RawBox]) -> tuple[tuple[float, float] | None, str]:
    """Read a JSON answer (fenced, whole text, or outermost bracket pair); blank it out of the text."""
    candidates: list[tuple[int, int]] = [(m.start(1), m.end(1)) for m in _FENCE_RE.finditer(text)][:4]
    stripped = text.strip()
    if stripped[:1] in ("[", "{"):  # the whole answer is JSON
        lead = len(text) - len(text.lstrip())
        candidates.append((lead, lead + len(stripped)))
    first, last = text.find("{"), text.rfind("}")
    if 0 <= first < last:  # an object inside prose; bare lists in prose are left to the box regexes
        candidates.append((first, last + 1))
    for s, e in candidates:
        if e - s > _JSON_MAX_CHARS:
            continue
        blob = text[s:e].strip()
        if not blob or blob[0] not in "[{":
            continue
        try:
            obj = json.loads(blob)
        except Exception:  # JSONDecodeError, RecursionError on deep nesting, ...
            continue
        found: list[_RawBox] = []
        span = _walk_json(obj, found, 0, s)
        if span is None and not found:
            continue
        boxes.extend(found)
        return span, _blank(text, [(s, e)])
    return None, text


def _num(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        f = float(v)
    elif isinstance(v, str):
        t = _parse_time_token(v.strip().rstrip("sS").strip())
        if t is None:
            return None
        f = t
    else:
        return None
    return f if math.isfinite(f) else None


def _nums(v: Any, n: int) -> tuple[float, ...] | None:
    if isinstance(v, (list, tuple)) and len(v) == n:
        vals = [_num(x) for x in v]
        if all(x is not None for x in vals):
            return tuple(vals)  # type: ignore[arg-type]
    return None


def _walk_json(obj: Any, boxes: list[_RawBox], depth: int, pos: int) -> tuple[float, float] | None:
    if depth > _JSON_MAX_DEPTH:
        return None
    span: tuple[float, float] | None = None
    if isinstance(obj, dict):
        keys = {str(k).lower(): v for k, v in obj.items()}
        box_vals = next((_nums(keys[k], 4) for k in _BOX_KEYS if k in keys and _nums(keys[k], 4)), None)
        if box_vals is not None:
            t = next((_num(keys[k]) for k in _BOX_TIME_KEYS if k in keys and _num(keys[k]) is not None), None)
            i = next((_num(keys[k]) for k in _BOX_INDEX_KEYS if k in keys and _num(keys[k]) is not None), None)
            boxes.append(_RawBox(box_vals, "json", time_s=t, index=int(i) if i is not None else None,
                                 pos=pos + len(boxes)))
        for k in _SPAN_KEYS:
            if k in keys and span is None and box_vals is None:
                span = _json_span(keys[k])
        if span is None:
            s = next((_num(keys[k]) for k in ("start", "start_time", "begin") if k in keys), None)
            e = next((_num(keys[k]) for k in ("end", "end_time", "finish") if k in keys), None)
            if s is not None and e is not None:
                span = (s, e)
        for k, v in obj.items():
            if str(k).lower() in _BOX_KEYS:
                continue
            t_key = _num(k) if isinstance(k, str) else None
            vals = _nums(v, 4)
            if t_key is not None and vals is not None:  # {"3.0": [x1, y1, x2, y2]} keyed by second
                boxes.append(_RawBox(vals, "json", time_s=t_key, pos=pos + len(boxes)))
            elif isinstance(v, (dict, list)):
                sub = _walk_json(v, boxes, depth + 1, pos)
                span = span if span is not None else sub
    elif isinstance(obj, list):
        vals = _nums(obj, 4)
        if vals is not None:
            boxes.append(_RawBox(vals, "json", pos=pos + len(boxes)))
            return None
        if depth == 0 and _nums(obj, 2) is not None:
            return _nums(obj, 2)  # type: ignore[return-value]
        for v in obj[:10000]:
            if isinstance(v, (dict, list)):
                sub = _walk_json(v, boxes, depth + 1, pos)
                span = span if span is not None else sub
    return span


def _json_span(v: Any) -> tuple[float, float] | None:
    pair = _nums(v, 2)
    if pair is not None:
        return pair  # type: ignore[return-value]
    if isinstance(v, list) and v:
        pair = _nums(v[0], 2)
        if pair is not None:
            return pair  # type: ignore[return-value]
    return None


# ----------------------------------------------------------------------------- boxes in text


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


# ----------------------------------------------------------------------------- times


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
    return (start / ctx.fps, end / ctx.fps), (start, end)


# ----------------------------------------------------------------------------- placing boxes


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
