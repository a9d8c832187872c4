"""Predicted/GT boxes of many queries as flat arrays, and per-frame lookup with optional filling.

Boxes arrive as ``{frame: [x1, y1, x2, y2]}`` dicts; scoring thousands of queries needs them as one
sorted array keyed by ``(query, frame)`` so every lookup is a single ``np.searchsorted``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import chain, repeat
from operator import is_not, itemgetter

import numpy as np

from stvg_plugin.util.box_ops import BoxRepairStats, sanitize_box_array

__all__ = ["BOX_FILLS", "RaggedBoxes", "composite_key", "gather_boxes", "gather_boxes_many", "sanitize_box_array"]

BOX_FILLS = ("none", "nearest", "linear")
_FRAME_BIAS = 1 << 31  # lets negative frame indices sort correctly inside a query's key range


def composite_key(qidx: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """One sortable int64 per (query, frame)."""
    return (np.asarray(qidx, dtype=np.int64) << 32) + (np.asarray(frames, dtype=np.int64) + _FRAME_BIAS)


_ABSENT = (np.nan, np.nan, np.nan, np.nan)  # sentinel: identity-compared, never a real box


def gather_boxes(
    dicts: Sequence[Mapping[int, Sequence[float]] | None],
    qidx: np.ndarray,
    frames: np.ndarray,
    frame_shift: np.ndarray | None = None,
    sanitize: bool = False,
    stats: BoxRepairStats | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact-frame boxes for (query, frame) rows grouped by query -> ``(boxes (n, 4), found)``.

    Only the rows asked for are read from the dicts, so a GT tube annotated on every raw frame costs
    as much as its sampled frames. ``frame_shift[q]`` is added to query q's dict keys. With
    ``sanitize``, boxes go through :func:`sanitize_box_array` (counted) and rejected ones are absent.
    """
    return gather_boxes_many([(dicts, frame_shift, sanitize)], qidx, frames, stats)[0]


def gather_boxes_many(
    sources: Sequence[tuple[Sequence[Mapping[int, Sequence[float]] | None], np.ndarray | None, bool]],
    qidx: np.ndarray,
    frames: np.ndarray,
    stats: BoxRepairStats | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`gather_boxes` for several ``(dicts, frame_shift, sanitize)`` sources on the same rows, in one pass.

    Per query, all of its frames are read from a plain dict with one ``operator.itemgetter`` call
    (shared by the sources whose keys are not shifted); a query with an absent frame falls back to
    ``dict.get`` row by row. All coordinates are then converted with a single ``np.fromiter``.
    """
    n = qidx.size
    if not n:
        return [(np.zeros((0, 4), dtype=np.float64), np.zeros(0, dtype=bool)) for _ in sources]
    bounds = np.concatenate([[0], np.flatnonzero(qidx[1:] != qidx[:-1]) + 1, [n]])
    group_q = qidx[bounds[:-1]].tolist()
    bounds = bounds.tolist()
    keys = frames.tolist()
    plan = []
    for dicts, shift, _ in sources:
        own = (frames - shift[qidx]).tolist() if shift is not None and shift.any() else None
        plan.append((dicts, own, [], []))
    for q, lo, hi in zip(group_q, bounds, bounds[1:]):
        shared = None
        for dicts, own, values, partial in plan:
            d = dicts[q]
            ks = keys if own is None else own
            if type(d) is dict and d:  # plain dict: one C-level lookup of all the query's frames
                if own is not None:
                    get = itemgetter(*ks[lo:hi]) if hi - lo > 1 else None
                elif shared is None:
                    get = shared = itemgetter(*ks[lo:hi]) if hi - lo > 1 else None
                else:
                    get = shared
                try:
                    if get is None:
                        values.append(d[ks[lo]])
                    else:
                        values.extend(get(d))
                    continue
                except KeyError:
                    pass
            if d:
                values.extend(map(d.get, ks[lo:hi], repeat(_ABSENT, hi - lo)))
            else:
                values.extend(repeat(_ABSENT, hi - lo))
            partial.append((lo, hi))
    out = []
    for (_, _, values, partial), (_, _, sanitize) in zip(plan, sources):
        found = np.ones(n, dtype=bool)
        for lo, hi in partial:
            found[lo:hi] = np.fromiter(map(is_not, values[lo:hi], repeat(_ABSENT, hi - lo)), dtype=bool, count=hi - lo)
        boxes = _stack_boxes(values, sanitize=True, stats=None)
        if sanitize and found.any():
            if found.all():
                boxes, found = sanitize_box_array(boxes, stats)
            else:
                clean, valid = sanitize_box_array(boxes[found], stats)
                boxes[found] = clean
                found[found] = valid
        out.append((boxes, found))
    return out


class RaggedBoxes:
    """Boxes of many queries, sorted by (query, frame), with lookup of frames by query."""

    def __init__(self, qidx: np.ndarray, frames: np.ndarray, boxes: np.ndarray, nq: int):
        order = np.lexsort((frames, qidx))
        self.qidx = np.asarray(qidx, dtype=np.int64)[order]
        self.frames = np.asarray(frames, dtype=np.int64)[order]
        self.boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)[order]
        self.keys = composite_key(self.qidx, self.frames)
        counts = np.bincount(self.qidx, minlength=nq)
        self.group_end = np.cumsum(counts)
        self.group_start = self.group_end - counts

    @classmethod
    def from_dicts(
        cls,
        dicts: Sequence[Mapping[int, Sequence[float]] | None],
        frame_shift: Sequence[int] | None = None,
        sanitize: bool = False,
        stats: BoxRepairStats | None = None,
    ) -> RaggedBoxes:
        """Flatten one ``{frame: box}`` dict per query (``None`` = no boxes); optionally sanitise.

        ``frame_shift[q]`` is added to query q's frame keys (TubeDETR's HC-STVG off-by-one).
        Malformed entries (not 4 numbers) are rejected like NaN boxes when ``sanitize`` is set.
        """
        nq = len(dicts)
        sizes = np.fromiter((len(d) if d else 0 for d in dicts), dtype=np.int64, count=nq)
        total = int(sizes.sum())
        qidx = np.repeat(np.arange(nq, dtype=np.int64), sizes)
        frames = np.fromiter((int(k) for d in dicts if d for k in d), dtype=np.int64, count=total)
        boxes = _stack_boxes([v for d in dicts if d for v in d.values()], sanitize, stats)
        if frame_shift is not None:
            frames = frames + np.asarray(frame_shift, dtype=np.int64)[qidx]
        if sanitize:
            boxes, valid = sanitize_box_array(boxes, stats)
            qidx, frames, boxes = qidx[valid], frames[valid], boxes[valid]
        return cls(qidx, frames, boxes, nq)

    def restrict_to_spans(self, start: np.ndarray, end: np.ndarray) -> RaggedBoxes:
        """Keep only boxes whose frame lies in the query's ``[start, end)``."""
        keep = (self.frames >= start[self.qidx]) & (self.frames < end[self.qidx])
        return RaggedBoxes(self.qidx[keep], self.frames[keep], self.boxes[keep], len(self.group_end))

    def lookup(self, qidx: np.ndarray, frames: np.ndarray, fill: str = "none") -> tuple[np.ndarray, np.ndarray]:
        """Box of each (query, frame) row -> ``(boxes (n, 4), found mask)``.

        ``none``: only a box at exactly that frame. ``nearest``: the query's box closest in frame
        (ties -> the earlier one). ``linear``: linear interpolation between the neighbouring boxes,
        the first/last box held constant outside them (``np.interp`` semantics, as STCAT fills).
        """
        if fill not in BOX_FILLS:
            raise ValueError(f"box_fill must be one of {BOX_FILLS}, got {fill!r}")
        n = qidx.size
        out = np.zeros((n, 4), dtype=np.float64)
        if n == 0 or self.keys.size == 0:
            return out, np.zeros(n, dtype=bool)
        keys = composite_key(qidx, frames)
        pos = np.searchsorted(self.keys, keys, side="left")
        exact = pos < self.keys.size
        exact[exact] = self.keys[pos[exact]] == keys[exact]
        if fill == "none":
            out[exact] = self.boxes[pos[exact]]
            return out, exact
        lo_bound, hi_bound = self.group_start[qidx], self.group_end[qidx]
        has_any = hi_bound > lo_bound
        right = np.where(exact, pos, np.minimum(pos, hi_bound - 1))
        left = np.where(exact, pos, np.maximum(pos - 1, lo_bound))
        right = np.clip(right, 0, self.keys.size - 1)
        left = np.clip(left, 0, self.keys.size - 1)
        fl, fr = self.frames[left], self.frames[right]
        if fill == "nearest":
            use_right = (fr - frames) < (frames - fl)
            src = np.where(use_right, right, left)
            out[has_any] = self.boxes[src[has_any]]
        else:
            span = (fr - fl).astype(np.float64)
            with np.errstate(divide="ignore", invalid="ignore"):
                w = np.where(span > 0, (frames - fl) / span, 0.0)
            w = np.clip(w, 0.0, 1.0)[:, None]
            interp = self.boxes[left] * (1.0 - w) + self.boxes[right] * w
            out[has_any] = interp[has_any]
        return out, has_any


def _stack_boxes(values: list, sanitize: bool, stats: BoxRepairStats | None) -> np.ndarray:
    """List of 4-number boxes -> ``(n, 4)`` float array; malformed rows become NaN (rejected later)."""
    if not values:
        return np.zeros((0, 4), dtype=np.float64)
    try:  # fastest path for well-formed boxes: one flat pass over all coordinates
        flat = np.fromiter(chain.from_iterable(values), dtype=np.float64, count=4 * len(values))
        return flat.reshape(len(values), 4)
    except (TypeError, ValueError):
        pass
    rows = np.full((len(values), 4), np.nan)
    for i, v in enumerate(values):
        try:
            arr = np.asarray(v, dtype=np.float64)
        except (TypeError, ValueError):
            continue
        if arr.shape == (4,):
            rows[i] = arr
    if not sanitize:
        raise ValueError("malformed box: expected 4 numbers")
    return rows
