"""Sampling frames with PyAV (the default backend), decoding only what the sampled frames depend on.

Why a module of its own: the planning pass (which packets hold sampled frames, which non-reference
frames can be left out) is the one intricate part of video I/O; see the comment below for the rules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from stvg_plugin.video.indices import sample_indices
from stvg_plugin.video.probe import _pyav_info, _pyav_open
from stvg_plugin.video.types import SampledVideo, VideoInfo, VideoReadError, _result

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
