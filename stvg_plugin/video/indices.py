"""Which frames are sampled: the project-wide index rules (see the package docstring).

Pure arithmetic on frame counts, apart from any decoder, so a caller can know the sampled frames of a
video without decoding it (``bench/bench_video.py``, tests).
"""

from __future__ import annotations

import math

import numpy as np

# --------------------------------------------------------------------------- index rules


def uniform_indices(total: int, n: int) -> np.ndarray:
    """Centre-of-segment sampling of ``n`` of ``total`` frames; all frames when ``n >= total``."""
    if n <= 0:
        raise ValueError(f"number of frames to sample must be positive, got {n}")
    if total <= 0:
        return np.zeros(0, dtype=np.int64)
    if n >= total:
        return np.arange(total, dtype=np.int64)
    # step total/n >= 1, so the floors are strictly increasing: unique without a dedup pass
    return np.floor((np.arange(n, dtype=np.float64) + 0.5) * (total / n)).astype(np.int64)


def sample_indices(
    total: int,
    video_fps: float,
    num_frames: int | None = 8,
    fps: float | None = None,
    max_frames: int | None = None,
) -> np.ndarray:
    """Which frames :func:`sample_video` decodes. ``fps`` wins over ``num_frames``; both None = all."""
    if fps is not None:
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        if video_fps > 0:
            n = max(1, math.floor(total / video_fps * fps + 1e-9))
        else:
            n = total
    elif num_frames is not None:
        n = num_frames
    else:
        n = total
    if max_frames is not None:
        if max_frames <= 0:
            raise ValueError(f"max_frames must be positive, got {max_frames}")
        n = min(n, max_frames)
    return uniform_indices(total, n)


