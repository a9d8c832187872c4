"""Video I/O: sample frames for a model (PyAV; decord on request) and write H.264 MP4 files.

Sampling rules (fixed project-wide so that every part maps model outputs back the same way):

* indices are exact **0-based frame indices in the order the decoder returns frames** (presentation
  order, as decord and lmms-eval count them); only the sampled frames are converted to RGB and kept,
  so memory is ``T x H x W x 3`` however long the video, and only the frames they depend on are
  decoded (see "PyAV: decode only what is needed" below);
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
import threading
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
    """Header facts; counts packets (no decode) when the container has no frame count (e.g. .ts).

    Counting reads the stream to its end; the caller reopens the file to decode (see
    :func:`_reopened`) rather than seeking back, which raw elementary streams (``.h264``) refuse and
    streams with repeated timestamps (concatenated ``.ts`` files) would land in the wrong copy of.
    """
    stream = container.streams.video[0]
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 0.0
    num_frames = int(stream.frames or 0)
    if num_frames <= 0:
        num_frames = sum(1 for pkt in container.demux(stream) if pkt.size > 0)
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


def _sample_decord(path, num_frames, fps, max_frames, size, threads=0, header=None) -> SampledVideo:
    try:
        import decord
    except ImportError as exc:
        raise VideoReadError(path, f"decord is not installed ({exc})") from None
    out_h, out_w = size if size is not None else (-1, -1)
    try:
        reader = decord.VideoReader(path, ctx=decord.cpu(0), width=out_w, height=out_h, num_threads=threads)
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


# ----------------------------------------------------------------- PyAV: decode only what is needed
#
# An H.264 access unit whose slices all have nal_ref_idc == 0 is, by the standard's definition, never
# used to predict another frame, so a frame nobody asked for that is also non-reference can be left
# out of the decoder without changing a single output pixel (x264's default B-frames: ~40 % of
# frames). Likewise a stretch between two IDR frames (closed GOP: nothing after an IDR refers to
# anything before it) without a sampled frame is not decoded at all. To know which packets carry
# sampled frames before decoding, one demux pass (no decode; ~1 % of the decode time) ranks every
# packet's pts: frame ``i`` is the packet with the ``i``-th smallest pts, which is the order in which
# the decoder presents frames. Files where this cannot be known exactly (no pts, repeated pts,
# packets the demuxer marks to discard) are decoded in full and the presented frames counted.

# packets of files up to this size are kept from the planning pass instead of demuxed again: each
# read is one more release and re-acquisition of the GIL, which is what 2 decoding threads contend on
_KEEP_PACKET_BYTES = 16 << 20

_H264_SIDE_NALS = (6, 9, 12)  # SEI, access-unit delimiter, filler: no later frame decodes from them


def _avcc_length_size(stream) -> int | None:
    """NAL length-prefix size of an AVCC (MP4/MKV) H.264 stream; None for Annex-B or other codecs."""
    ctx = stream.codec_context
    extradata = ctx.extradata
    if ctx.name != "h264" or not extradata or len(extradata) < 7 or extradata[0] != 1:
        return None
    return (extradata[4] & 3) + 1


def _h264_kind(data: memoryview, length_size: int) -> int:
    """2 = holds an IDR slice, 1 = droppable (non-reference slices, SEI or delimiters only), 0 = other."""
    pos, end, idr, nonref, other = 0, len(data), False, False, False
    while pos + length_size < end:
        header = data[pos + length_size]
        kind = header & 0x1F
        if kind == 5:
            idr = True
        elif kind == 1 and not header & 0x60:  # nal_ref_idc == 0
            nonref = True
        elif kind not in _H264_SIDE_NALS:
            other = True
        pos += length_size + int.from_bytes(data[pos : pos + length_size], "big")
    return 2 if idr else int(nonref and not other)


@dataclass
class _Plan:
    """Per packet in decode order: its pts, whether it must be decoded, and which output slot it fills."""

    pts: list[int]
    decode: list[bool]
    slot: dict[int, int]  # pts -> position in the sample
    last: int  # decode-order position of the last packet holding a sampled frame
    packets: list | None  # the demuxed packets when small enough to keep, so they are not read twice


def _plan(path: str, container, stream, indices: np.ndarray, num_frames: int) -> _Plan | None:
    """One demux pass (no decoding) deciding which packets to decode; None when ranks are not exact.

    The pass leaves ``container`` at the end of the stream: unless the plan kept the packets, the
    caller decodes from a reopened container (:func:`_reopened`).
    """
    length_size = _avcc_length_size(stream)
    pts: list[int] = []
    kinds: list[int] = []
    packets: list | None = []
    kept = 0
    for packet in container.demux(stream):
        if packet.size == 0:
            continue
        if packet.pts is None or packet.is_discard:
            return None
        pts.append(packet.pts)
        kinds.append(_h264_kind(memoryview(packet), length_size) if length_size else 0)
        if packets is not None:
            kept += packet.size
            if kept > _KEEP_PACKET_BYTES:
                packets = None
            else:
                packets.append(packet)
    order = sorted(pts)
    if len(set(order)) != len(order):
        return None
    if len(order) < num_frames and len(indices) and indices[-1] >= len(order):
        missing = int(indices[indices >= len(order)][0])
        raise VideoReadError(
            path,
            f"stream has {len(order)} of {num_frames} frames; sampled frame {missing} is missing (truncated?)",
        )
    slot = {order[i]: k for k, i in enumerate(indices.tolist())}
    wanted = [p in slot for p in pts]
    # closed GOPs: a stretch from one IDR to the next is needed only if it holds a sampled frame
    decode, gop_start = [False] * len(pts), 0
    for i in range(len(pts) + 1):
        if i == len(pts) or (kinds[i] == 2 and i > gop_start):
            if any(wanted[gop_start:i]):
                for j in range(gop_start, i):
                    decode[j] = wanted[j] or kinds[j] != 1
            gop_start = i
    last = max((i for i, w in enumerate(wanted) if w), default=-1)
    return _Plan(pts=pts, decode=decode, slot=slot, last=last, packets=packets)


class _PlanMismatch(Exception):
    """Frames cannot be matched to the plan (second demux differs, frames without pts; never observed)."""


# FFmpeg's decoder threads pay for their start-up (a thread and a context each, per file) only on
# large frames: measured on 2 cores, 1 thread is faster up to 854x480, FFmpeg's count at 1280x720.
_THREADED_MIN_PIXELS = 640 * 640


def _sample_pyav(path, num_frames, fps, max_frames, size, threads=None) -> SampledVideo:
    """Decode with PyAV, leaving out frames no sampled frame depends on; convert only the sampled ones.

    ``threads`` is the decoder's thread count: 0 = FFmpeg's choice, None = 1 for frames under
    ``_THREADED_MIN_PIXELS``, else FFmpeg's choice. A stream whose frame size changes mid-way is
    refused rather than silently rescaled.
    """
    try:
        return _read_pyav(path, num_frames, fps, max_frames, size, threads, planned=True)
    except _PlanMismatch:
        return _read_pyav(path, num_frames, fps, max_frames, size, threads, planned=False)


def _read_pyav(path, num_frames, fps, max_frames, size, threads, planned) -> SampledVideo:
    import av

    container = _pyav_open(path)
    try:
        info = _pyav_info(path, container)
        if not container.streams.video[0].frames:  # the frames were counted: the stream is at its end
            container = _reopened(path, container)
        indices = sample_indices(info.num_frames, info.fps, num_frames, fps, max_frames)
        out_h, out_w = size if size is not None else (info.height, info.width)
        plan = None
        if planned and len(indices) < info.num_frames:  # with every frame sampled there is nothing to leave out
            plan = _plan(path, container, container.streams.video[0], indices, info.num_frames)
            if plan is None or plan.packets is None:  # decoded from a second demux pass
                container = _reopened(path, container)
        stream = container.streams.video[0]
        if threads is None:
            threads = 1 if info.width * info.height < _THREADED_MIN_PIXELS else 0
        stream.thread_type = "AUTO"
        stream.thread_count = threads
        reformatter = av.video.reformatter.VideoReformatter()  # one scaler context for all frames
        frames = np.empty((len(indices), out_h, out_w, 3), dtype=np.uint8)
        filled = np.zeros(len(indices), dtype=bool)

        def keep(frame, k: int) -> None:
            if (frame.width, frame.height) != (info.width, info.height):
                raise _size_change(path, info, frame, int(indices[k]))
            frames[k] = reformatter.reformat(frame, width=out_w, height=out_h, format="rgb24").to_ndarray()
            filled[k] = True

        if plan is not None:
            _decode_planned(stream, container, plan, keep)
            if not filled.all():
                raise VideoReadError(path, f"sampled frame {indices[~filled][0]} cannot be decoded (corrupt data?)")
        else:
            _decode_counted(path, container, stream, indices, info, keep)
    except av.FFmpegError as exc:
        raise VideoReadError(path, f"decode failed ({exc})") from None
    finally:
        container.close()
    return _result(frames, indices, info)


def _reopened(path: str, container):
    """A fresh container at the start of the file (never a seek: see :func:`_pyav_info`)."""
    container.close()
    return _pyav_open(path)


def _decode_planned(stream, container, plan: _Plan, keep: Callable[[Any, int], None]) -> None:
    """Feed the decoder only the planned packets; stop after the last one holding a sampled frame."""
    ctx, i = stream.codec_context, 0
    packets = plan.packets if plan.packets is not None else container.demux(stream)
    for packet in packets:
        if packet.size == 0:
            continue
        if i >= len(plan.pts) or packet.pts != plan.pts[i]:
            raise _PlanMismatch
        if plan.decode[i]:
            for frame in ctx.decode(packet):
                _keep_planned(frame, plan, keep)
        if i == plan.last:
            break
        i += 1
    for frame in ctx.decode(None):  # drain the frames still held for reordering or by threads
        _keep_planned(frame, plan, keep)


def _keep_planned(frame, plan: _Plan, keep: Callable[[Any, int], None]) -> None:
    if frame.pts is None:  # a decoder that does not pass packet pts through: count frames instead
        raise _PlanMismatch
    k = plan.slot.get(frame.pts)
    if k is not None:
        keep(frame, k)


def _decode_counted(path, container, stream, indices, info, keep: Callable[[Any, int], None]) -> None:
    """Decode every frame up to the last sampled one, counting frames in the order they are presented."""
    wanted, k, decoded = indices.tolist(), 0, 0
    for frame in container.decode(stream):
        if (frame.width, frame.height) != (info.width, info.height):
            raise _size_change(path, info, frame, decoded)
        if decoded == wanted[k]:
            keep(frame, k)
            k += 1
            if k == len(wanted):
                return
        decoded += 1
    raise VideoReadError(
        path,
        f"stream ended after {decoded} of {info.num_frames} frames; sampled frame {wanted[k]} "
        "cannot be decoded (truncated?)",
    )


def _size_change(path: str, info: VideoInfo, frame, index: int) -> VideoReadError:
    return VideoReadError(
        path,
        f"frame size changes mid-stream: frame {index} is {frame.width}x{frame.height}, "
        f"the stream header says {info.width}x{info.height}",
    )


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
    threads: int | None = None,
) -> SampledVideo:
    """Decode the sampled frames of one video (rules in the module docstring).

    ``size=(height, width)`` resizes inside the decoder's colour conversion (cheaper than resizing
    afterwards). ``backend="auto"`` is PyAV, which decodes only what the sampled frames depend on:
    measured faster than decord's seek-per-frame on long-GOP H.264 (``bench/bench_video.py``) and
    correct on containers without a seek index, where decord returns wrong frames. ``threads``
    is the decoder's thread count (0 = FFmpeg's choice); None = 1 inside a :class:`PrefetchLoader`
    with several workers, else 1 for frames under 640 x 640 pixels and FFmpeg's choice above.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if num_frames is not None and num_frames <= 0:
        raise ValueError(f"num_frames must be positive, got {num_frames}")
    if size is not None and (len(size) != 2 or min(size) <= 0):
        raise ValueError(f"size must be (height, width) with positive values, got {size!r}")
    if threads is not None and threads < 0:
        raise ValueError(f"threads must be >= 0, got {threads}")
    p = str(path)
    _check_file(p)
    args = (p, num_frames, fps, max_frames, tuple(int(s) for s in size) if size is not None else None)
    threads = getattr(_thread_defaults, "threads", None) if threads is None else threads
    if backend == "decord":
        return _sample_decord(*args, threads or 0)
    return _sample_pyav(*args, threads)


# --------------------------------------------------------------------------- prefetching


def _call_safely(sample_fn: Callable[[Any], SampledVideo], item: Any) -> SampledVideo | VideoReadError:
    """Turn any failure into a value so one bad video never stops a run."""
    try:
        return sample_fn(item)
    except VideoReadError as exc:
        return exc
    except Exception as exc:  # reported per item, with its type
        return VideoReadError(str(item), f"{type(exc).__name__}: {exc}")


# decoder threads for sample_video(threads=None) in this thread; PrefetchLoader's workers set it
_thread_defaults = threading.local()


def _set_decode_threads(threads: int | None) -> None:
    _thread_defaults.threads = threads


class PrefetchLoader:
    """Decode videos ahead of the consumer and yield ``(item, SampledVideo | VideoReadError)`` in order.

    Threads are the default: PyAV and decord release the GIL while decoding, and threads avoid
    pickling frames between processes (see ``bench/bench_video.py``). At most ``prefetch``
    results wait in memory. ``num_workers=0`` decodes in the caller's thread. ``sample_fn``
    defaults to ``sample_video(item)``; for ``executor="process"`` it must be a module-level
    function. ``decode_threads`` is the decoder thread count inside each worker for calls that
    leave ``sample_video(threads=None)``; None = 1 with several workers (the workers already fill
    the cores; FFmpeg's threads in each would only contend with the other worker's), else
    ``sample_video``'s own rule.
    """

    def __init__(
        self,
        items: Iterable[Any],
        sample_fn: Callable[[Any], SampledVideo] | None = None,
        num_workers: int = 2,
        prefetch: int | None = None,
        executor: str = "thread",
        decode_threads: int | None = None,
    ):
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        if executor not in ("thread", "process"):
            raise ValueError(f"executor must be 'thread' or 'process', got {executor!r}")
        if decode_threads is not None and decode_threads < 0:
            raise ValueError(f"decode_threads must be >= 0, got {decode_threads}")
        self.items = items
        self.sample_fn = sample_fn if sample_fn is not None else sample_video
        self.num_workers = num_workers
        self.prefetch = prefetch if prefetch is not None else max(2 * num_workers, 1)
        self.executor = executor
        self.decode_threads = decode_threads if decode_threads is not None else (1 if num_workers > 1 else None)

    def _make_executor(self) -> Executor:
        init = {"initializer": _set_decode_threads, "initargs": (self.decode_threads,)}
        if self.executor == "process":
            import multiprocessing

            return ProcessPoolExecutor(self.num_workers, mp_context=multiprocessing.get_context("spawn"), **init)
        return ThreadPoolExecutor(self.num_workers, thread_name_prefix="stvg-video", **init)

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
