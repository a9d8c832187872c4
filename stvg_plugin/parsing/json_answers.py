"""Answers written as JSON (fenced, the whole text, or an object inside prose): spans and boxes.

JSON is read with ``json.loads`` inside ``try`` (never ``eval``), with size and depth caps; what was
read is blanked out of the text so the text formats do not read it again.
"""

from __future__ import annotations

import json
import math
from typing import Any

from stvg_plugin.parsing.patterns import _FENCE_RE
from stvg_plugin.parsing.region import _blank
from stvg_plugin.parsing.spans import _parse_time_token
from stvg_plugin.parsing.types import _RawBox

_JSON_MAX_CHARS = 200_000
_JSON_MAX_DEPTH = 32


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
