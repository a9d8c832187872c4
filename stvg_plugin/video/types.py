"""The records and the one error of video I/O, shared by every decoder, the prefetcher and callers.

Why a module of its own: :class:`VideoReadError`, :class:`VideoInfo` and :class:`SampledVideo` are what
every decoder (``pyav_backend``, ``decord_backend``) returns or raises and what callers catch, so they
sit below all of them. ``_check_file`` (the checks made before any decoder opens a file) and
``_result`` (seconds of the sampled frames: ``index / fps``) are here for the same reason.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np

from stvg_plugin.data import StvgError


class VideoReadError(StvgError):
    """A video that cannot be read; ``path`` and ``reason`` are kept for counted skips."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot read video '{self.path}': {reason}")

    def __reduce__(self):  # keep (path, reason) when sent between processes
        return (type(self), (self.path, self.reason))


@dataclass
class VideoInfo:
    path: str
    fps: float
    num_frames: int
    width: int
    height: int

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.fps if self.fps > 0 else 0.0


@dataclass
class SampledVideo:
    """Decoded frames (``T x H x W x 3`` uint8 RGB) with their source frame indices and seconds."""

    frames: np.ndarray
    indices: np.ndarray
    timestamps: np.ndarray
    info: VideoInfo

    def __len__(self) -> int:
        return int(self.indices.shape[0])


def _check_file(path: str) -> None:
    if not os.path.exists(path):
        raise VideoReadError(path, "file not found")
    if not os.path.isfile(path):
        raise VideoReadError(path, "not a regular file")
    if os.path.getsize(path) == 0:
        raise VideoReadError(path, "empty file (0 bytes)")


def _result(frames: np.ndarray, indices: np.ndarray, info: VideoInfo) -> SampledVideo:
    fps = info.fps if info.fps > 0 else 1.0
    return SampledVideo(frames=frames, indices=indices, timestamps=indices / fps, info=info)


def _first_line(exc: BaseException) -> str:
    """decord messages start with a timestamp and a C++ source location; keep only the reason."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    text = re.sub(r"^\[[\d:]+\] \S+: (Error: )?", "", text)
    return text[:300] or type(exc).__name__
