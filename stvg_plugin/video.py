"""Video I/O: sample frames for a model (decord, PyAV fallback) and write H.264 MP4 files.

Sampling rules (fixed project-wide so that every part maps model outputs back the same way):

* indices are exact **0-based decode-order frame indices**; the frames of a sample are decoded
  only at those indices (``get_batch``), so memory is ``T x H x W x 3`` however long the video;
* uniform mode picks the **centre** of ``n`` equal segments (``floor((i + 0.5) * total / n)``);
  fps mode is the same rule with ``n = floor(duration * fps)``; a cap (``max_frames``) lowers ``n``,
  so a long video is sampled down over its whole length, never truncated;
* ``timestamps = index / fps`` (constant-frame-rate assumption, the same rule as
  :func:`stvg_plugin.data.seconds_to_span`); for CFR files this equals decord's
  ``get_frame_timestamp(i)[0]``.

Every failure to read a file (missing, empty, not a video, truncated, undecodable frame) surfaces
as one :class:`VideoReadError` naming the path and the reason, never a decoder traceback.
"""

from __future__ import annotations

import collections
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from stvg_plugin.data import StvgError, atomic_path

BACKENDS = ("auto", "decord", "pyav")


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


# --------------------------------------------------------------------------- probing


def _check_file(path: str) -> None:
    if not os.path.exists(path):
        raise VideoReadError(path, "file not found")
    if not os.path.isfile(path):
        raise VideoReadError(path, "not a regular file")
    if os.path.getsize(path) == 0:
        raise VideoReadError(path, "empty file (0 bytes)")


def _pyav_open(path: str):
    import av

    try:
        container = av.open(path)
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise VideoReadError(path, f"not a readable video container ({exc})") from None
    if not container.streams.video:
        container.close()
        raise VideoReadError(path, "no video stream")
    return container


def _pyav_info(path: str, container) -> VideoInfo:
    """Header facts; counts packets (no decode) when the container has no frame count (e.g. .ts)."""
    stream = container.streams.video[0]
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 0.0
    num_frames = int(stream.frames or 0)
    if num_frames <= 0:
        num_frames = sum(1 for pkt in container.demux(stream) if pkt.size > 0)
        container.seek(0)
    width, height = int(stream.codec_context.width), int(stream.codec_context.height)
    if num_frames <= 0 or width <= 0 or height <= 0:
        raise VideoReadError(path, f"no decodable video frames (frames={num_frames}, size={width}x{height})")
    return VideoInfo(path=path, fps=fps, num_frames=num_frames, width=width, height=height)


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Frame rate, frame count and size from the container header (PyAV; nothing decoded)."""
    import av

    p = str(path)
    _check_file(p)
    container = _pyav_open(p)
    try:
        return _pyav_info(p, container)
    except av.FFmpegError as exc:
        raise VideoReadError(p, f"cannot read stream header ({exc})") from None
    finally:
        container.close()


# --------------------------------------------------------------------------- sampling backends


def _sample_decord(path, num_frames, fps, max_frames, size, header=None) -> SampledVideo:
    try:
        import decord
    except ImportError as exc:
        raise VideoReadError(path, f"decord is not installed ({exc})") from None
    out_h, out_w = size if size is not None else (-1, -1)
    try:
        reader = decord.VideoReader(path, ctx=decord.cpu(0), width=out_w, height=out_h)
        total = len(reader)
        video_fps = float(reader.get_avg_fps())
    except Exception as exc:  # DECORDError (a bare Exception), RuntimeError, AssertionError
        raise VideoReadError(path, f"decord cannot open it ({_first_line(exc)})") from None
    indices = sample_indices(total, video_fps, num_frames, fps, max_frames)
    try:
        frames = reader.get_batch(indices.tolist()).asnumpy()
    except Exception as exc:  # e.g. a missing packet, or decord's resize bug at some widths (48 px)
        raise VideoReadError(path, f"decord cannot decode sampled frames ({_first_line(exc)})") from None
    finally:
        del reader
    if frames.shape[0] != len(indices) or (size is not None and frames.shape[1:3] != size):
        raise VideoReadError(path, f"decord returned frames of shape {frames.shape} for {len(indices)} x {size}")
    header = header or _header(path)
    width, height = header[1:] if header and header[1] > 0 else (frames.shape[2], frames.shape[1])
    info = VideoInfo(path=path, fps=video_fps, num_frames=total, width=width, height=height)
    return _result(frames, indices, info)


def _header(path: str) -> tuple[str, int, int] | None:
    """Container format and original (width, height) without decoding (decord exposes neither)."""
    import av

    try:
        with av.open(path) as container:
            ctx = container.streams.video[0].codec_context
            return (container.format.name, int(ctx.width), int(ctx.height))
    except (av.FFmpegError, OSError, IndexError, UnicodeDecodeError):
        return None


# decord seeks by a packet index; containers without one (MPEG-TS, raw streams) come back with
# wrong frames (e.g. a mid-stream resolution change returns the last frame everywhere), so
# "auto" sends them to the sequential PyAV decoder.
_PYAV_FORMATS = ("mpegts", "h264", "hevc", "mpeg", "mpegvideo")


def _sample_pyav(path, num_frames, fps, max_frames, size) -> SampledVideo:
    """Sequential decode that converts only the sampled frames; robust where decord is not.

    Counts frames in decode order (as decord and lmms-eval do). A stream whose frame size changes
    mid-way is refused rather than silently rescaled.
    """
    import av

    container = _pyav_open(path)
    try:
        info = _pyav_info(path, container)
        indices = sample_indices(info.num_frames, info.fps, num_frames, fps, max_frames)
        out_h, out_w = size if size is not None else (info.height, info.width)
        frames = np.empty((len(indices), out_h, out_w, 3), dtype=np.uint8)
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        reformatter = av.video.reformatter.VideoReformatter()  # one scaler context for all frames
        wanted, k, decoded = indices.tolist(), 0, 0
        for frame in container.decode(stream):
            if (frame.width, frame.height) != (info.width, info.height):
                raise VideoReadError(
                    path,
                    f"frame size changes mid-stream at frame {decoded}: "
                    f"{info.width}x{info.height} -> {frame.width}x{frame.height}",
                )
            if decoded == wanted[k]:
                frames[k] = reformatter.reformat(frame, width=out_w, height=out_h, format="rgb24").to_ndarray()
                k += 1
                if k == len(wanted):
                    break
            decoded += 1
        if k < len(wanted):
            raise VideoReadError(
                path,
                f"stream ended after {decoded} of {info.num_frames} frames; sampled frame {wanted[k]} "
                "cannot be decoded (truncated?)",
            )
    except av.FFmpegError as exc:
        raise VideoReadError(path, f"decode failed ({exc})") from None
    finally:
        container.close()
    return _result(frames, indices, info)


def _result(frames: np.ndarray, indices: np.ndarray, info: VideoInfo) -> SampledVideo:
    fps = info.fps if info.fps > 0 else 1.0
    return SampledVideo(frames=frames, indices=indices, timestamps=indices / fps, info=info)


def _first_line(exc: BaseException) -> str:
    """decord messages start with a timestamp and a C++ source location; keep only the reason."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    text = re.sub(r"^\[[\d:]+\] \S+: (Error: )?", "", text)
    return text[:300] or type(exc).__name__


def sample_video(
    path: str | os.PathLike,
    num_frames: int | None = 8,
    fps: float | None = None,
    max_frames: int | None = None,
    size: tuple[int, int] | None = None,
    backend: str = "auto",
) -> SampledVideo:
    """Decode only the sampled frames of one video (rules in the module docstring).

    ``size=(height, width)`` resizes inside the decoder (cheaper than resizing afterwards).
    ``backend="auto"`` uses decord and falls back to PyAV for any file decord refuses; streams
    without a seek index (MPEG-TS, raw H.264) go to PyAV directly.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if num_frames is not None and num_frames <= 0:
        raise ValueError(f"num_frames must be positive, got {num_frames}")
    if size is not None and (len(size) != 2 or min(size) <= 0):
        raise ValueError(f"size must be (height, width) with positive values, got {size!r}")
    p = str(path)
    _check_file(p)
    args = (p, num_frames, fps, max_frames, tuple(int(s) for s in size) if size is not None else None)
    if backend == "pyav":
        return _sample_pyav(*args)
    if backend == "decord":
        return _sample_decord(*args)
    header = _header(p)
    if header is not None and header[0] in _PYAV_FORMATS:
        return _sample_pyav(*args)
    try:
        return _sample_decord(*args, header=header)
    except VideoReadError as decord_err:
        try:
            return _sample_pyav(*args)
        except VideoReadError as pyav_err:
            raise VideoReadError(p, f"{pyav_err.reason} [decord: {decord_err.reason}]") from None


# --------------------------------------------------------------------------- prefetching


def _call_safely(sample_fn: Callable[[Any], SampledVideo], item: Any) -> SampledVideo | VideoReadError:
    """Turn any failure into a value so one bad video never stops a run."""
    try:
        return sample_fn(item)
    except VideoReadError as exc:
        return exc
    except Exception as exc:  # reported per item, with its type
        return VideoReadError(str(item), f"{type(exc).__name__}: {exc}")


class PrefetchLoader:
    """Decode videos ahead of the consumer and yield ``(item, SampledVideo | VideoReadError)`` in order.

    Threads are the default: decord (ctypes FFI) and PyAV release the GIL while decoding, and
    threads avoid pickling frames between processes (see ``bench/bench_video.py``). At most
    ``prefetch`` results wait in memory. ``num_workers=0`` decodes in the caller's thread.
    ``sample_fn`` defaults to ``sample_video(item)``; for ``executor="process"`` it must be a
    module-level function.
    """

    def __init__(
        self,
        items: Iterable[Any],
        sample_fn: Callable[[Any], SampledVideo] | None = None,
        num_workers: int = 2,
        prefetch: int | None = None,
        executor: str = "thread",
    ):
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        if executor not in ("thread", "process"):
            raise ValueError(f"executor must be 'thread' or 'process', got {executor!r}")
        self.items = items
        self.sample_fn = sample_fn if sample_fn is not None else sample_video
        self.num_workers = num_workers
        self.prefetch = prefetch if prefetch is not None else max(2 * num_workers, 1)
        self.executor = executor

    def _make_executor(self) -> Executor:
        if self.executor == "process":
            import multiprocessing

            return ProcessPoolExecutor(self.num_workers, mp_context=multiprocessing.get_context("spawn"))
        return ThreadPoolExecutor(self.num_workers, thread_name_prefix="stvg-video")

    def __iter__(self) -> Iterator[tuple[Any, SampledVideo | VideoReadError]]:
        if self.num_workers == 0:
            for item in self.items:
                yield item, _call_safely(self.sample_fn, item)
            return
        pool = self._make_executor()
        pending: collections.deque[tuple[Any, Future]] = collections.deque()
        try:
            for item in self.items:
                pending.append((item, pool.submit(_call_safely, self.sample_fn, item)))
                if len(pending) >= self.prefetch:
                    yield self._pop(pending)
            while pending:
                yield self._pop(pending)
        finally:
            for _, fut in pending:
                fut.cancel()
            pool.shutdown(wait=True, cancel_futures=True)

    @staticmethod
    def _pop(pending: collections.deque) -> tuple[Any, SampledVideo | VideoReadError]:
        item, fut = pending.popleft()
        try:
            return item, fut.result()
        except Exception as exc:  # e.g. a crashed worker process
            return item, VideoReadError(str(item), f"worker failed: {type(exc).__name__}: {exc}")


# --------------------------------------------------------------------------- writing

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
