"""Frame universes of the STVG protocols, built for many queries at once.

The TubeDETR evaluators only count a 5 fps sampling of each evaluation segment (capped at 200
frames); reproducing that set exactly is what makes our vIoU equal theirs. Everything here works on
flat "ragged" arrays: one row per (query, frame), grouped by query and sorted by frame.
"""

from __future__ import annotations

import numpy as np

from stvg_plugin.data import SECONDS_TOLERANCE

TUBEDETR_TARGET_FPS = 5
TUBEDETR_MAX_LEN = 200


def ragged_arange(starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(query_index, value)`` rows for ``range(starts[q], starts[q] + lengths[q])`` of every query q."""
    starts = np.asarray(starts, dtype=np.int64)
    lengths = np.maximum(np.asarray(lengths, dtype=np.int64), 0)
    qidx = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    offsets = np.cumsum(lengths) - lengths
    values = np.arange(qidx.size, dtype=np.int64) - np.repeat(offsets - starts, lengths)
    return qidx, values


def tubedetr_universe(
    fps: np.ndarray,
    seg_start: np.ndarray,
    seg_end: np.ndarray,
    target_fps: int = TUBEDETR_TARGET_FPS,
    max_len: int = TUBEDETR_MAX_LEN,
) -> tuple[np.ndarray, np.ndarray]:
    """TubeDETR's sampled frames of ``[seg_start, seg_end)`` for every query, as ragged rows.

    See :class:`SampledUniverse` for the rule; this materialises every row.
    """
    return SampledUniverse(fps, seg_start, seg_end, target_fps, max_len).rows()


class SampledUniverse:
    """TubeDETR's sampled frame universe of many queries, answered without materialising it.

    Rule (metrics.md §1): ``r = target_fps / fps``; the segment start is always kept, and frame f is
    kept when ``int(f * r) > int(last_kept * r)``. Because ``int(f * r)`` never decreases with f,
    that is the same as "``floor(f * r)`` grew since the previous frame": the kept frames are the
    start plus the first frame of every later bin ``k = floor(f * r)``, n of them in all. The
    products are the same IEEE doubles TubeDETR's Python computes, so the sets are identical. Then if
    n > ``max_len``, element ``(j * n) // max_len`` is kept for ``j < max_len``. ``fps < target_fps``
    (TubeDETR asserts) simply keeps every frame here.

    Everything the metrics need is closed-form per query: how many kept frames lie below a bound x
    (``1 + #bins whose first frame is <= x - 1`` = ``1 + floor((x - 1) * r) - k_first + 1``, clipped;
    after the cap ``#{j : (j * n) // max_len < m} = ceil(max_len * m / n)``), and the frame of one kept
    element, so only the rows asked for are ever computed.
    """

    def __init__(
        self,
        fps: np.ndarray,
        seg_start: np.ndarray,
        seg_end: np.ndarray,
        target_fps: int = TUBEDETR_TARGET_FPS,
        max_len: int = TUBEDETR_MAX_LEN,
    ):
        self.rate = target_fps / np.asarray(fps, dtype=np.float64)
        self.start = np.asarray(seg_start, dtype=np.int64)
        seg_end = np.asarray(seg_end, dtype=np.int64)
        self.last = np.maximum(seg_end - 1, self.start)
        self.max_len = max_len
        self.k_first = np.floor(self.start * self.rate).astype(np.int64) + 1
        k_last = np.floor(self.last * self.rate).astype(np.int64)
        self.every = self.rate >= 1.0
        self.n_bins = np.where(
            self.every, np.maximum(seg_end - self.start - 1, 0), np.maximum(k_last - self.k_first + 1, 0)
        )
        self.n = self.n_bins + 1  # kept frames before the cap
        self.capped = self.n > max_len
        self.size = np.where(self.capped, max_len, self.n)

    def _kept_below(self, x: np.ndarray) -> np.ndarray:
        """Per query: number of kept frames ``< x`` before the cap."""
        x = np.clip(np.asarray(x, dtype=np.int64), self.start, self.last + 1)
        bins = np.floor((x - 1) * self.rate).astype(np.int64) - self.k_first + 1
        m = np.where(x > self.start, 1 + np.clip(bins, 0, self.n_bins), 0)
        return np.where(self.every, x - self.start, m)

    def index(self, x: np.ndarray) -> np.ndarray:
        """Per query: number of universe frames ``< x`` (= index of the first frame ``>= x``)."""
        m = self._kept_below(x)
        return np.where(self.capped, (self.max_len * m + self.n - 1) // self.n, m)

    def count_in(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Per query: number of universe frames f with ``lo <= f < hi``."""
        return np.maximum(self.index(hi) - self.index(lo), 0)

    def rows_in(self, lo: np.ndarray, hi: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(query, frame)`` rows with ``lo <= frame < hi`` of the queries where ``mask`` holds."""
        first = self.index(lo)
        length = np.where(mask, np.maximum(self.index(hi) - first, 0), 0)
        return self._rows(first, length)

    def rows(self) -> tuple[np.ndarray, np.ndarray]:
        """Every ``(query, frame)`` row, grouped by query and sorted by frame."""
        return self._rows(np.zeros_like(self.size), self.size)

    def _rows(self, first: np.ndarray, length: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``first[q] <= j < first[q] + length[q]`` of the capped sequence, for every query q.

        Per-query values are spread onto the rows with ``np.repeat`` and every row is computed with
        the same expression: cheaper than gathering by query index and masking.
        """
        length = np.maximum(length, 0)
        qidx, j = ragged_arange(first, length)
        if self.capped.any():  # element (j * n) // max_len; max_len / max_len keeps uncapped rows as they are
            j *= np.repeat(np.where(self.capped, self.n, self.max_len), length)
            j //= self.max_len
        return qidx, self._kept_frame(j, length)

    def _kept_frame(self, i: np.ndarray, length: np.ndarray) -> np.ndarray:
        """Frame of the i-th kept element (rows grouped by query, ``length[q]`` rows for query q).

        The start for i = 0, else the first frame of bin ``k_first - 1 + i`` (:func:`_first_frames`);
        rates >= 1 keep every frame (``start + i``). Queries share few distinct rates, so when the
        bins asked for span a small range per rate, each (rate, bin) is solved once in a table and
        the rows just index it; otherwise every row is solved. Both give the same frames.
        """
        frames = np.repeat(self.start, length)
        frames += i
        binned = ~self.every
        if not binned.any():
            return frames
        use = i > 0
        if not binned.all():
            use &= np.repeat(binned, length)
        ks = np.repeat(self.k_first - 1, length)
        ks += i
        solved = self._bin_table_lookup(ks, length, binned)
        if solved is None:
            solved = _first_frames(ks, np.repeat(self.rate, length))
        np.copyto(frames, solved, casting="unsafe", where=use)  # integral values: exact
        return frames

    def _bin_table_lookup(self, ks: np.ndarray, length: np.ndarray, binned: np.ndarray) -> np.ndarray | None:
        """:func:`_first_frames` of every row's bin via one table per distinct rate; None if the tables
        would not be smaller than the rows. Rows of queries that keep every frame get a dummy value."""
        rates, rate_id = np.unique(self.rate, return_inverse=True)
        has = binned & (length > 0)
        last_row = np.cumsum(length) - 1
        first_row = last_row - length + 1
        lo = np.full(rates.size, np.iinfo(np.int64).max)
        hi = np.full(rates.size, np.iinfo(np.int64).min)
        np.minimum.at(lo, rate_id[has], ks[first_row[has]])  # bins only grow within a query
        np.maximum.at(hi, rate_id[has], ks[last_row[has]])
        size = np.where(hi >= lo, hi - lo + 1, 0)
        if size.sum() > ks.size:
            return None
        lo = np.where(size > 0, lo, 0)
        _, k_table = ragged_arange(lo, size)
        table = _first_frames(k_table, np.repeat(rates, size))
        index = ks + np.repeat((np.cumsum(size) - size - lo)[rate_id], length)
        np.clip(index, 0, max(table.size - 1, 0), out=index)
        return table[index] if table.size else np.zeros(ks.size)


def _first_frames(k: np.ndarray, r: np.ndarray) -> np.ndarray:
    """First frame f of bin k at rate r, i.e. the least f with ``floor(f * r) >= k`` (as float64).

    That is ``ceil(k / r)`` up to float error, so the candidates ``c - 1, c, c + 1`` are tested with
    the exact expression; ``floor(f * r)`` never decreases in f, so "c - 1 passes" implies "c
    passes" and the answer is ``c + 1`` minus the number of passing candidates. All in float64:
    the same values numpy's int64 -> float64 casts would give. Unused rows may hold k/r = NaN
    (fps = inf): no warnings.
    """
    k = k.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        c = np.divide(k, r)
        np.ceil(c, out=c)
        pick = c + 1.0
        test = np.multiply(c, r)
        pick -= np.floor(test, out=test) >= k
        c -= 1.0
        np.multiply(c, r, out=test)
        pick -= np.floor(test, out=test) >= k
    return pick


def dense_universe(seg_start: np.ndarray, seg_end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every integer frame of ``[seg_start, seg_end)`` (STCAT / CG-STVG style evaluators)."""
    seg_start = np.asarray(seg_start, dtype=np.int64)
    return ragged_arange(seg_start, np.asarray(seg_end, dtype=np.int64) - seg_start)


def seconds_to_universe_span(
    qidx: np.ndarray,
    frames: np.ndarray,
    fps: np.ndarray,
    t_start: np.ndarray,
    t_end: np.ndarray,
    nq: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Seconds -> end-exclusive frames on each query's universe (project rule, metrics.md §1).

    ``start`` = first universe frame with ``f / fps >= t_start``; ``end`` = last universe frame with
    ``f / fps <= t_end``, plus one: :func:`stvg_plugin.data.seconds_to_span`'s rule, on the universe's
    frames instead of every frame, with its tolerance (``SECONDS_TOLERANCE``, here in seconds). No such
    frame -> an empty span ``[0, 0)``.
    """
    t = frames / np.asarray(fps, dtype=np.float64)[qidx]
    start = np.zeros(nq, dtype=np.int64)
    end = np.zeros(nq, dtype=np.int64)
    ok_start = t >= np.asarray(t_start)[qidx] - SECONDS_TOLERANCE
    ok_end = t <= np.asarray(t_end)[qidx] + SECONDS_TOLERANCE
    has_start = np.zeros(nq, dtype=bool)
    has_end = np.zeros(nq, dtype=bool)
    rows = np.flatnonzero(ok_start)
    if rows.size:
        uq, first_pos = np.unique(qidx[rows], return_index=True)
        start[uq] = frames[rows[first_pos]]
        has_start[uq] = True
    rows = np.flatnonzero(ok_end)
    if rows.size:
        rev = rows[::-1]
        uq, last_pos = np.unique(qidx[rev], return_index=True)
        end[uq] = frames[rev[last_pos]] + 1
        has_end[uq] = True
    valid = has_start & has_end & (end > start)
    start[~valid] = 0
    end[~valid] = 0
    return start, end
