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

One job per module: ``types`` (the error and the records), ``indices`` (which frames), ``probe``
(header facts), ``pyav_backend`` and ``decord_backend`` (decoding), ``sampling`` (:func:`sample_video`,
the entry point), ``prefetch`` (:class:`PrefetchLoader`) and ``writer`` (:func:`write_video`). Import
from ``stvg_plugin.video``; the names below are its public interface.
"""

from stvg_plugin.video.indices import sample_indices, uniform_indices
from stvg_plugin.video.prefetch import PrefetchLoader
from stvg_plugin.video.probe import probe_video
from stvg_plugin.video.pyav_backend import _plan
from stvg_plugin.video.sampling import BACKENDS, _thread_defaults, sample_video
from stvg_plugin.video.types import SampledVideo, VideoInfo, VideoReadError
from stvg_plugin.video.writer import write_video

__all__ = [
    "BACKENDS",
    "PrefetchLoader",
    "SampledVideo",
    "VideoInfo",
    "VideoReadError",
    "_plan",  # bench/bench_video.py and tests/test_video.py inspect the decode plan
    "_thread_defaults",  # tests/test_video.py reads the worker's decoder thread count
    "probe_video",
    "sample_indices",
    "sample_video",
    "uniform_indices",
    "write_video",
]
