"""Writing RGB frames to an H.264 file (synthetic data, rendered overlays), atomically.

Kept apart from reading: it needs only PyAV's encoder and :func:`stvg_plugin.data.atomic_path`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import numpy as np

from stvg_plugin.data import atomic_path

_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".ts": "mpegts"}


def write_video(
    path: str | os.PathLike,
    frames: Iterable[np.ndarray],
    fps: float,
    *,
    crf: int = 20,
    preset: str = "medium",
    gop: int | None = None,
    threads: int = 0,
) -> int:
    """Stream RGB uint8 frames into an H.264 yuv420p file (FiftyOne's App plays it); returns the count.

    Written under a temporary name and renamed, so a crash never leaves a half file at ``path``.
    MP4 files get ``faststart`` (index first) for streaming. ``gop=None`` keeps x264's default
    keyframe interval (250). ``threads=1`` removes x264's thread-count dependence; even so, this
    x264 build occasionally emits slightly different bytes for identical frames (measured).
    """
    import av

    p = Path(path)
    fmt = _FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise ValueError(f"unsupported video suffix {p.suffix!r}; use one of {sorted(_FORMATS)}")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    count = 0
    with atomic_path(p) as tmp:
        options = {"movflags": "+faststart"} if fmt in ("mp4", "mov") else {}
        with av.open(str(tmp), mode="w", format=fmt, options=options) as container:
            stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
            stream.pix_fmt = "yuv420p"
            codec_opts = {"crf": str(crf), "preset": preset}
            if gop is not None:
                codec_opts["g"] = str(gop)
            if threads > 0:
                codec_opts["threads"] = str(threads)
            stream.options = codec_opts
            for arr in frames:
                arr = np.ascontiguousarray(arr, dtype=np.uint8)
                if count == 0:
                    _check_frame_shape(arr)
                    stream.height, stream.width = arr.shape[:2]
                elif arr.shape[:2] != (stream.height, stream.width):
                    raise ValueError(
                        f"frame {count} has shape {arr.shape}, expected {(stream.height, stream.width, 3)}"
                    )
                for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                    container.mux(packet)
                count += 1
            if count == 0:
                raise ValueError("no frames to write")
            for packet in stream.encode():
                container.mux(packet)
    return count


def _check_frame_shape(arr: np.ndarray) -> None:
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"frames must be H x W x 3 RGB, got shape {arr.shape}")
    if arr.shape[0] % 2 or arr.shape[1] % 2:
        raise ValueError(f"H.264 yuv420p needs even width and height, got {arr.shape[1]}x{arr.shape[0]}")
