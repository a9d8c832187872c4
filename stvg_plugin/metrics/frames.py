"""Frame universes of the STVG protocols, built for many queries at once.

The TubeDETR evaluators only count a 5 fps sampling of each evaluation segment (capped at 200
frames); reproducing that set exactly is what makes our vIoU equal theirs. Everything here works on
flat "ragged" arrays: one row per (query, frame), grouped by query and sorted by frame.
"""

from __future__ import annotations

import numpy as np

TUBEDETR_TARGET_FPS = 5
TUBEDETR_MAX_LEN = 200
_SECONDS_TOL = 1e-9


def ragged_arange(starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(query_index, value)`` rows for ``range(starts[q], starts[q] + lengths[q])`` of every query q."""
    starts = np.asarray(starts, dtype=np.int64)
    lengths = np.maximum(np.asarray(lengths, dtype=np.int64), 0)
    qidx = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    offsets = np.cumsum(lengths) - lengths
    values = np.arange(qidx.size, dtype=np.int64) - offsets[qidx] + starts[qidx]
    return qidx, values


def tubedetr_universe(
    fps: np.ndarray,
    seg_start: np.ndarray,
    seg_end: np.ndarray,
    target_fps: int = TUBEDETR_TARGET_FPS,
    max_len: int = TUBEDETR_MAX_LEN,
) -> tuple[np.ndarray, np.ndarray]:
    """TubeDETR's sampled frames of ``[seg_start, seg_end)`` for every query, as ragged rows.

    Rule (metrics.md §1): ``r = target_fps / fps``; the segment start is always kept, and frame f is
    kept when ``int(f * r) > int(last_kept * r)``. Because ``int(f * r)`` never decreases with f,
    that is the same as "``floor(f * r)`` grew since the previous frame", which vectorises. The
    products are the same IEEE doubles TubeDETR's Python computes, so the sets are identical. Then if
    n > ``max_len`` frames were kept, element ``(j * n) // max_len`` is kept for ``j < max_len``.
    ``fps < target_fps`` (TubeDETR asserts) simply keeps every frame here.
    """
    fps = np.asarray(fps, dtype=np.float64)
    seg_start = np.asarray(seg_start, dtype=np.int64)
    seg_end = np.asarray(seg_end, dtype=np.int64)
    nq = fps.size
    rate = target_fps / fps
    qidx, frames = _bin_starts(rate, seg_start, seg_end)
    counts = np.bincount(qidx, minlength=nq)
    capped = counts > max_len
    if capped.any():
        offsets = np.cumsum(counts) - counts
        select = ~capped[qidx]
        cq = np.flatnonzero(capped)
        j = np.arange(max_len, dtype=np.int64)
        picks = offsets[cq][:, None] + (j[None, :] * counts[cq][:, None]) // max_len
        select[picks.ravel()] = True
        qidx, frames = qidx[select], frames[select]
    return qidx, frames


def _bin_starts(rate: np.ndarray, seg_start: np.ndarray, seg_end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The segment start plus the first frame of every later ``floor(f * rate)`` bin, without scanning frames.

    For bin k the first frame is ``ceil(k / rate)`` up to float error, so the candidates
    ``c - 1, c, c + 1`` are tested with the exact expression ``floor(f * rate) >= k`` and the first one
    that passes is taken (``floor(f * rate)`` never decreases in f). Rates >= 1 keep every frame.
    """
    last = np.maximum(seg_end - 1, seg_start)
    k_first = np.floor(seg_start * rate).astype(np.int64) + 1
    k_last = np.floor(last * rate).astype(np.int64)
    n_bins = np.maximum(k_last - k_first + 1, 0)
    every = rate >= 1.0
    n_bins = np.where(every, np.maximum(seg_end - seg_start - 1, 0), n_bins)
    # one extra leading row per query holds its start frame (always kept), so no re-sorting is needed
    qidx, k = ragged_arange(np.where(every, seg_start, k_first - 1), n_bins + 1)
    frames = k.copy()
    lead = np.cumsum(n_bins + 1) - (n_bins + 1)
    sub = ~every[qidx]
    sub[lead] = False
    if sub.any():
        ks, r = k[sub], rate[qidx[sub]]
        c = np.ceil(ks / r).astype(np.int64)
        pick = c + 1
        for cand in (c, c - 1):
            pick = np.where(np.floor(cand * r) >= ks, cand, pick)
        frames[sub] = pick
    frames[lead] = seg_start
    return qidx, frames


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
    ``f / fps <= t_end``, plus one. A tolerance of 1e-9 s absorbs float noise in the seconds (the same
    tolerance as :func:`stvg_plugin.data.seconds_to_span`). No such frame -> an empty span ``[0, 0)``.
    """
    t = frames / np.asarray(fps, dtype=np.float64)[qidx]
    start = np.zeros(nq, dtype=np.int64)
    end = np.zeros(nq, dtype=np.int64)
    ok_start = t >= np.asarray(t_start)[qidx] - _SECONDS_TOL
    ok_end = t <= np.asarray(t_end)[qidx] + _SECONDS_TOL
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
