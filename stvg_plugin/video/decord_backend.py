"""Sampling frames with decord (``backend="decord"``, on request only).

Kept apart from PyAV's decoder because decord is optional (imported lazily; a missing install is a
:class:`VideoReadError`) and seeks per frame, where PyAV decodes only what the sampled frames need.
"""

from __future__ import annotations

from stvg_plugin.video.indices import sample_indices
from stvg_plugin.video.probe import _header
from stvg_plugin.video.types import SampledVideo, VideoInfo, VideoReadError, _first_line, _result


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
