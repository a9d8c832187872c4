"""Reading a video's header (frame rate, frame count, size) with PyAV, decoding nothing.

Also the PyAV opening that turns every container error into one :class:`VideoReadError`, which the
PyAV decoder (``pyav_backend``) and the decord backend's header read (``_header``) reuse.
"""

from __future__ import annotations

import os

from stvg_plugin.video.types import VideoInfo, VideoReadError, _check_file


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


def _header(path: str) -> tuple[str, int, int] | None:
    """Container format and original (width, height) without decoding (decord exposes neither)."""
    import av

    try:
        with av.open(path) as container:
            ctx = container.streams.video[0].codec_context
            return (container.format.name, int(ctx.width), int(ctx.height))
    except (av.FFmpegError, OSError, IndexError, UnicodeDecodeError):
        return None
