"""Predicted/GT boxes of many queries as flat arrays, and per-frame lookup with optional filling.

Boxes arrive as ``{frame: [x1, y1, x2, y2]}`` dicts; scoring thousands of queries needs them as
arrays: :func:`gather_boxes_many` reads the rows the metrics need (the engine's largest cost), and
:class:`RaggedBoxes` keeps all of a query's boxes sorted by ``(query, frame)`` for the fill modes.
"""

from __future__ import annotations

import marshal
from collections import deque
from collections.abc import Mapping, Sequence
from functools import cache
from itertools import chain, islice, repeat
from operator import getitem, is_, is_not
from typing import Any

import numpy as np

from stvg_plugin.util.box_ops import BoxRepairStats, sanitize_box_array, sanitize_box_array_in_place

__all__ = [
    "BOX_FILLS",
    "RaggedBoxes",
    "composite_key",
    "gather_boxes",
    "gather_boxes_many",
    "marshal_records",
    "sanitize_box_array",
]

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
    """:func:`gather_boxes` for several ``(dicts, frame_shift, sanitize)`` sources on the same rows.

    Reading the dicts is most of the metric engine's time, so nothing here loops over queries or
    rows in Python: per block of ``_CHUNK_ROWS`` rows, the lookups are one ``map`` and the
    coordinates one ``marshal`` pass (:func:`marshal_records`). Blocks keep the temporaries (keys,
    box lists, bytes) small enough to stay in cache and to reuse the same memory, instead of
    faulting in fresh pages for every pass over all rows.
    """
    n = qidx.size
    if not n:
        return [(np.zeros((0, 4), dtype=np.float64), np.zeros(0, dtype=bool)) for _ in sources]
    starts = np.flatnonzero(np.concatenate(([True], qidx[1:] != qidx[:-1])))
    group_q = qidx[starts].tolist()
    group_len = np.diff(np.append(starts, n)).tolist()
    readers = [_Reader(dicts, shift, sanitize, qidx, group_q, group_len) for dicts, shift, sanitize in sources]
    for lo in range(0, n, _CHUNK_ROWS):
        hi = min(lo + _CHUNK_ROWS, n)
        keys = frames[lo:hi].tolist()
        for reader in readers:
            own = keys if reader.shift_rows is None else (frames[lo:hi] - reader.shift_rows[lo:hi]).tolist()
            values, any_absent = reader.lookup(lo, hi, own)
            rec = marshal_records(values, 4, "g")
            if rec is not None:
                for i in range(4):
                    reader.cols[i, lo:hi] = rec[f"v{i}"]
            else:
                reader.cols[:, lo:hi] = _stack_any_boxes(values, sanitize=True).T
            if not any_absent:
                continue
            if reader.sanitize and rec is not None:  # only the count matters: absent rows are NaN
                reader.num_absent += _count_absent(values, rec)
            else:
                mask = np.fromiter(map(is_not, values, repeat(_ABSENT)), dtype=bool, count=hi - lo)
                reader.found[lo:hi] = mask
                reader.num_absent += hi - lo - int(np.count_nonzero(mask))
    out = []
    for reader in readers:
        boxes = reader.cols.T  # (n, 4) view of the column-major array
        found = reader.found
        if reader.sanitize:  # absent rows hold NaN, so the rule rejects them too; they are not counted
            found = sanitize_box_array_in_place(boxes, stats, reader.num_absent)
        out.append((boxes, found))
    return out


_CHUNK_ROWS = 8192
_NO_BOXES: dict = {}  # stands in for a query without boxes; never written to


class _Reader:
    """One ``(dicts, frame_shift, sanitize)`` source of :func:`gather_boxes_many`, read block by block.

    ``row_dicts`` yields each row's dict (its query's) and is consumed in row order. While every
    frame asked has had a box, blocks are read with ``operator.getitem`` (no absent rows to look
    for); after the first miss, with ``dict.get`` and the ``_ABSENT`` default.
    """

    def __init__(
        self,
        dicts: Sequence[Mapping[int, Sequence[float]] | None],
        shift: np.ndarray | None,
        sanitize: bool,
        qidx: np.ndarray,
        group_q: list[int],
        group_len: list[int],
    ):
        per_group = [dicts[q] for q in group_q]
        kinds = set(map(type, per_group))
        self.plain = kinds <= {dict, type(None)}  # dict.get / getitem work on every row
        if self.plain and type(None) in kinds:
            per_group = [_NO_BOXES if d is None else d for d in per_group]
        self.row_dicts = chain.from_iterable(map(repeat, per_group, group_len))
        self.expect_hits = self.plain
        self.dicts, self.qidx, self.sanitize = dicts, qidx, sanitize
        self.shift_rows = shift[qidx] if shift is not None and shift.any() else None
        n = qidx.size
        self.cols = np.empty((4, n))  # coordinates column-major: the arithmetic that follows is per column
        self.found = np.ones(n, dtype=bool)
        self.num_absent = 0

    def lookup(self, lo: int, hi: int, keys: list[int]) -> tuple[list, bool]:
        """Box (or ``_ABSENT``) of rows ``lo:hi`` -> ``(values, whether any may be absent)``."""
        if self.expect_hits:
            rows = islice(self.row_dicts, hi - lo)
            try:
                return list(map(getitem, rows, keys)), False
            except KeyError:
                deque(rows, maxlen=0)  # skip the rest of this block's rows
                self.expect_hits = False
            dicts = [_NO_BOXES if d is None else d for d in map(self.dicts.__getitem__, self.qidx[lo:hi].tolist())]
            return list(map(dict.get, dicts, keys, repeat(_ABSENT))), True
        dicts = islice(self.row_dicts, hi - lo)
        if not self.plain:  # other mappings: their own get; a falsy one has no boxes
            return list(map(_mapping_get, dicts, keys)), True
        return list(map(dict.get, dicts, keys, repeat(_ABSENT))), True


def _mapping_get(d: Mapping | None, key: int) -> Any:
    return d.get(key, _ABSENT) if d else _ABSENT


def _count_absent(values: list, rec: np.ndarray) -> int:
    """How many ``values`` are ``_ABSENT``: only tuples whose first item is NaN can be, checked by identity."""
    maybe = np.flatnonzero((rec["code"] == ord("(")) & np.isnan(rec["v0"]))
    return list(map(is_, map(values.__getitem__, maybe.tolist()), repeat(_ABSENT))).count(True)


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
        drop_non_finite: bool = False,
    ) -> RaggedBoxes:
        """Flatten one ``{frame: box}`` dict per query (``None`` = no boxes); optionally sanitise.

        ``frame_shift[q]`` is added to query q's frame keys (TubeDETR's HC-STVG off-by-one).
        Malformed entries (not 4 numbers) are rejected like NaN boxes when ``sanitize`` is set.
        ``drop_non_finite`` without ``sanitize``: boxes are kept as given (swapped corners, zero area)
        except malformed or non-finite ones, which cannot be filled from (the fill modes' need).
        """
        nq = len(dicts)
        sizes = np.fromiter((len(d) if d else 0 for d in dicts), dtype=np.int64, count=nq)
        total = int(sizes.sum())
        qidx = np.repeat(np.arange(nq, dtype=np.int64), sizes)
        frames = np.fromiter((int(k) for d in dicts if d for k in d), dtype=np.int64, count=total)
        boxes = _stack_boxes([v for d in dicts if d for v in d.values()], sanitize or drop_non_finite, stats)
        if frame_shift is not None:
            frames = frames + np.asarray(frame_shift, dtype=np.int64)[qidx]
        if sanitize:
            boxes, valid = sanitize_box_array(boxes, stats)
            qidx, frames, boxes = qidx[valid], frames[valid], boxes[valid]
        elif drop_non_finite:
            valid = np.isfinite(boxes).all(axis=1)
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
    n = len(values)
    cols = np.empty((4, n))
    for lo in range(0, n, _CHUNK_ROWS):
        block = values[lo : lo + _CHUNK_ROWS]
        rec = marshal_records(block, 4, "g")
        if rec is None:
            cols[:, lo : lo + len(block)] = _stack_any_boxes(block, sanitize).T
        else:
            for i in range(4):
                cols[i, lo : lo + len(block)] = rec[f"v{i}"]
    return cols.T


def _stack_any_boxes(values: list, sanitize: bool) -> np.ndarray:
    """:func:`_stack_boxes` for boxes that are not all plain float lists (ints, numpy arrays, malformed)."""
    if not values:
        return np.zeros((0, 4), dtype=np.float64)
    try:  # any 4 numbers per box: one flat pass over all coordinates
        if set(map(len, values)) == {4}:  # else a 5-number box would shift every later box silently
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


# marshal format 2 (no back-references): a list is b"[" + int32 count + its items; a tuple the same
# with b"("; a float b"g" + 8-byte little-endian IEEE double; an int in int32 range b"i" + int32.
_ITEM_TYPES = {"g": "<f8", "i": "<i4"}
_LIST_HEADER = 5


@cache
def _record_dtype(size: int, item_code: str) -> np.dtype:
    fields = [("code", "u1"), ("count", "<i4")]
    for i in range(size):
        fields += [(f"t{i}", "u1"), (f"v{i}", _ITEM_TYPES[item_code])]
    return np.dtype(fields)  # packed: one record per marshalled list/tuple


def marshal_records(values: list, size: int, item_code: str) -> np.ndarray | None:
    """``values`` as structured records (fields ``v0``..) if each is a list/tuple of ``size`` items of one kind.

    ``item_code`` ``"g"``: Python floats; ``"i"``: Python ints in int32 range. ``marshal.dumps``
    serialises the whole list from C, much faster than handing items to numpy one by one; the
    records are then checked byte by byte (list/tuple code, count, one item code per field), so a
    different shape anywhere (other lengths or item types, subclasses, numpy objects, which marshal
    writes differently or not at all) returns None and the caller takes its general path.
    """
    try:
        buf = marshal.dumps(values, 2)
    except ValueError:  # an object marshal cannot write
        return None
    dtype = _record_dtype(size, item_code)
    n = len(values)
    if len(buf) != _LIST_HEADER + dtype.itemsize * n:
        return None
    rec = np.frombuffer(buf, dtype=dtype, count=n, offset=_LIST_HEADER)
    code = rec["code"]
    if not (((code == ord("[")) | (code == ord("("))).all() and (rec["count"] == size).all()):
        return None
    item = ord(item_code)
    if not all((rec[f"t{i}"] == item).all() for i in range(size)):
        return None
    return rec
