"""Frame sampling on real MP4 files: exact indices/timestamps, both backends, bad input, prefetching."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import decord
import numpy as np
import pytest

from stvg_plugin import video
from stvg_plugin.video import (
    PrefetchLoader,
    SampledVideo,
    VideoReadError,
    probe_video,
    pyav_backend,
    sample_indices,
    sample_video,
    uniform_indices,
    write_video,
)


def _videos(synth_dir: Path) -> list[Path]:
    return sorted(synth_dir.glob("video_*.mp4"))


def _gradient_frames(n: int, height: int = 48, width: int = 64):
    """Frames whose red channel encodes the frame index (up to 255), to check which frame came back."""
    for i in range(n):
        frame = np.zeros((height, width, 3), dtype=np.uint8)
        frame[..., 0] = min(i, 255)
        frame[..., 1] = 128
        yield frame


# --------------------------------------------------------------------------- index rules


def test_uniform_indices_centre_of_segment():
    assert uniform_indices(10, 4).tolist() == [1, 3, 6, 8]
    assert uniform_indices(100, 1).tolist() == [50]
    assert uniform_indices(5, 8).tolist() == [0, 1, 2, 3, 4]  # never repeats a frame
    assert uniform_indices(0, 8).tolist() == []
    assert uniform_indices(10, 4).dtype == np.int64
    with pytest.raises(ValueError):
        uniform_indices(10, 0)


@pytest.mark.parametrize("total,n", [(7, 7), (8, 7), (97, 32), (1000, 3), (601, 600)])
def test_uniform_indices_sorted_unique_in_range(total, n):
    idx = uniform_indices(total, n)
    assert len(idx) == min(n, total)
    assert np.all(np.diff(idx) > 0)
    assert idx[0] >= 0 and idx[-1] < total


def test_fps_mode_spacing_and_cap():
    # 8.5 s at 10 fps sampled at 2 fps: one frame every 5, centred in each 0.5 s segment
    assert sample_indices(85, 10.0, fps=2.0).tolist() == list(range(2, 85, 5))
    # fps wins over num_frames; a cap lowers the count but still covers the whole video
    capped = sample_indices(600, 30.0, num_frames=8, fps=2.0, max_frames=10)
    assert capped.tolist() == uniform_indices(600, 10).tolist()
    assert capped[0] < 60 and capped[-1] > 540
    assert sample_indices(20, 10.0, num_frames=None).tolist() == list(range(20))
    assert len(sample_indices(20, 10.0, num_frames=None, max_frames=5)) == 5
    with pytest.raises(ValueError):
        sample_indices(20, 10.0, fps=0.0)


# --------------------------------------------------------------------------- sampling real files


def test_sample_video_exact_indices_and_timestamps(synth_dir):
    path = _videos(synth_dir)[0]
    info = probe_video(path)
    reader = decord.VideoReader(str(path))
    assert (info.num_frames, info.fps, info.width, info.height) == (len(reader), 10.0, 160, 120)
    sv = sample_video(path, num_frames=8)
    assert isinstance(sv, SampledVideo)
    assert sv.frames.shape == (8, 120, 160, 3) and sv.frames.dtype == np.uint8
    assert sv.indices.tolist() == uniform_indices(info.num_frames, 8).tolist()
    np.testing.assert_allclose(sv.timestamps, sv.indices / 10.0)
    np.testing.assert_allclose(sv.timestamps, reader.get_frame_timestamp(sv.indices.tolist())[:, 0], atol=1e-6)
    assert sv.info == info


def test_decoded_frames_are_the_indexed_ones(tmp_path):
    path = tmp_path / "ramp.mp4"
    write_video(path, _gradient_frames(60), fps=30.0)
    for backend in ("decord", "pyav"):
        sv = sample_video(path, num_frames=6, backend=backend)
        red = sv.frames[:, 24, 32, 0].astype(int)
        assert np.all(np.abs(red - sv.indices) <= 3), (backend, red, sv.indices)


def test_backends_agree(synth_dir):
    path = _videos(synth_dir)[1]
    a = sample_video(path, num_frames=5, backend="decord")
    b = sample_video(path, num_frames=5, backend="pyav")
    assert a.indices.tolist() == b.indices.tolist()
    assert a.info == b.info
    assert np.abs(a.frames.astype(int) - b.frames.astype(int)).max() <= 2


def test_fps_mode_on_file(synth_dir):
    path = _videos(synth_dir)[0]
    n = probe_video(path).num_frames
    sv = sample_video(path, fps=2.0)
    assert sv.indices.tolist() == sample_indices(n, 10.0, fps=2.0).tolist()
    np.testing.assert_allclose(np.diff(sv.timestamps), 0.5, atol=0.11)


@pytest.mark.parametrize("backend", ["auto", "decord", "pyav"])
def test_resize_during_decode(synth_dir, backend):
    sv = sample_video(_videos(synth_dir)[0], num_frames=3, size=(64, 96), backend=backend)
    assert sv.frames.shape == (3, 64, 96, 3)
    assert (sv.info.width, sv.info.height) == (160, 120)  # original size is still reported


def test_decord_refusal_falls_back_to_pyav(synth_dir):
    # decord 0.6.0 fails to resize to a 48 px width (buffer size check); PyAV handles it
    path = _videos(synth_dir)[0]
    with pytest.raises(VideoReadError) as err:
        sample_video(path, num_frames=3, size=(32, 48), backend="decord")
    assert str(path) in str(err.value)
    auto = sample_video(path, num_frames=3, size=(32, 48), backend="auto")
    pyav = sample_video(path, num_frames=3, size=(32, 48), backend="pyav")
    assert auto.frames.shape == (3, 32, 48, 3)
    np.testing.assert_array_equal(auto.frames, pyav.frames)


def test_long_video_is_sampled_down_not_truncated(tmp_path):
    path = tmp_path / "long.mp4"
    write_video(path, _gradient_frames(600, 32, 32), fps=30.0, preset="ultrafast")
    sv = sample_video(path, fps=2.0, max_frames=16)
    assert len(sv) == 16 and sv.frames.nbytes == 16 * 32 * 32 * 3
    assert sv.indices[0] < 40 and sv.indices[-1] > 560
    assert sv.timestamps[-1] > 18.0


# --------------------------------------------------------------------------- decoding only what is needed


def _moving_frames(n: int, height: int = 64, width: int = 96):
    """Moving squares on a gradient with noise: x264 codes P- and (non-)reference B-frames."""
    rng = np.random.default_rng(1)
    base = np.zeros((height, width, 3), dtype=np.uint8)
    base[..., 0] = np.linspace(20, 220, width, dtype=np.uint8)[None, :]
    base[..., 2] = np.linspace(220, 20, height, dtype=np.uint8)[:, None]
    base += rng.integers(0, 10, size=base.shape, dtype=np.uint8)
    for i in range(n):
        frame = base.copy()
        x = (3 * i) % (width - 16)
        frame[20:36, x : x + 16] = (240, 200, 40)
        frame[(2 * i) % (height - 8) :][:8, 60:68] = (40, 220, 90)
        yield frame


def _write_x264(path: Path, n: int, x264_params: str, fps: int = 25) -> Path:
    """An H.264 file with explicit x264 settings (open GOP, no B-frames, ...), written with PyAV."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        stream.options = {"x264-params": x264_params, "preset": "veryfast"}
        for arr in _moving_frames(n):
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _every_frame(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Reference: decode every frame single-threaded, in the decoder's order, and convert it."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        h, w = size or (stream.codec_context.height, stream.codec_context.width)
        return np.stack([f.to_ndarray(width=w, height=h, format="rgb24") for f in container.decode(stream)])


def _decoded_count(path: Path, n: int) -> tuple[int, int]:
    """Packets the sampler's plan hands to the decoder for n samples, of those up to the last sample."""
    info = probe_video(path)
    with av.open(str(path)) as container:
        plan = video._plan(
            str(path), container, container.streams.video[0], uniform_indices(info.num_frames, n), info.num_frames
        )
    return sum(plan.decode[: plan.last + 1]), plan.last + 1


_STREAMS = {
    "default": ("mp4", ""),  # x264 defaults: 3 B-frames, b-pyramid, keyint 250
    "short_gop": ("mp4", "keyint=12:min-keyint=12:scenecut=0"),
    "open_gop": ("mp4", "keyint=12:min-keyint=12:open-gop=1:scenecut=0"),
    "no_bframes": ("mp4", "bframes=0"),
    "no_pyramid": ("mkv", "b-pyramid=none:keyint=30"),
    "mpegts": ("ts", "keyint=20"),
}


@pytest.fixture(scope="module")
def x264_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("x264")
    return {name: _write_x264(d / f"{name}.{ext}", 75, params) for name, (ext, params) in _STREAMS.items()}


@pytest.mark.parametrize("name", list(_STREAMS))
@pytest.mark.parametrize("n", [1, 2, 7, 32, 74])
def test_pyav_frames_equal_a_full_decode(x264_files, name, n):
    """Leaving frames out of the decoder changes no pixel and no index, whatever the GOP structure."""
    path = x264_files[name]
    every = _every_frame(path)
    for threads in (0, 1):
        sv = sample_video(path, num_frames=n, backend="pyav", threads=threads)
        assert sv.indices.tolist() == uniform_indices(len(every), n).tolist()
        np.testing.assert_array_equal(sv.frames, every[sv.indices])
    reader = decord.VideoReader(str(path))
    assert len(reader) == len(every) == sv.info.num_frames
    if name != "mpegts":  # decord has no seek index for MPEG-TS
        np.testing.assert_allclose(sv.timestamps, reader.get_frame_timestamp(sv.indices.tolist())[:, 0], atol=1e-6)


def test_large_files_are_demuxed_twice_with_the_same_frames(x264_files, monkeypatch):
    """Above the keep limit, packets are read again instead of kept from the planning pass."""
    path = x264_files["short_gop"]
    kept = sample_video(path, num_frames=7, backend="pyav")
    monkeypatch.setattr(pyav_backend, "_KEEP_PACKET_BYTES", 0)  # read where it is defined
    again = sample_video(path, num_frames=7, backend="pyav")
    np.testing.assert_array_equal(kept.frames, again.frames)
    np.testing.assert_array_equal(again.frames, _every_frame(path)[again.indices])


def test_pyav_resized_frames_equal_a_full_decode(x264_files):
    path = x264_files["default"]
    sv = sample_video(path, num_frames=9, size=(32, 40), backend="pyav")
    np.testing.assert_array_equal(sv.frames, _every_frame(path, (32, 40))[sv.indices])


def test_frames_left_out_of_the_decoder(x264_files):
    # non-reference B-frames that are not sampled are skipped (x264 default: ~40 % of frames) ...
    decoded, upto = _decoded_count(x264_files["default"], 8)
    assert decoded < 0.8 * upto
    # ... whole closed GOPs (IDR to IDR) without a sample are skipped: 1 sample needs 1 GOP of 12
    assert _decoded_count(x264_files["short_gop"], 1)[0] <= 12
    # an open GOP's I-frames are not IDR: its GOPs are never skipped, only non-reference frames
    assert 12 < _decoded_count(x264_files["open_gop"], 1)[0]
    # no B-frames: every frame up to the last sample is a reference
    assert _decoded_count(x264_files["no_bframes"], 8) == (71, 71)
    # MPEG-TS carries Annex-B H.264: indices still come from pts, nothing is left out
    decoded, upto = _decoded_count(x264_files["mpegts"], 8)
    assert decoded == upto >= 65


def test_sampling_all_frames(x264_files):
    path = x264_files["default"]
    sv = sample_video(path, num_frames=None)
    assert sv.indices.tolist() == list(range(75))
    np.testing.assert_array_equal(sv.frames, _every_frame(path))


def test_auto_backend_is_pyav(synth_dir):
    path = _videos(synth_dir)[2]
    auto = sample_video(path, num_frames=6)
    pyav = sample_video(path, num_frames=6, backend="pyav")
    np.testing.assert_array_equal(auto.frames, pyav.frames)
    assert auto.info == pyav.info


def test_threads_argument(synth_dir):
    path = _videos(synth_dir)[0]
    one = sample_video(path, num_frames=5, threads=1)
    np.testing.assert_array_equal(one.frames, sample_video(path, num_frames=5, threads=2).frames)
    assert sample_video(path, num_frames=5, backend="decord", threads=1).indices.tolist() == one.indices.tolist()
    with pytest.raises(ValueError):
        sample_video(path, threads=-1)


# --------------------------------------------------------------------------- bad input


# decord itself returns wrong frames for resolution_change without an error (no seek index in
# MPEG-TS); "auto" routes such containers to PyAV, so only the explicit decord backend is left out.
_BAD_CASES = [
    (name, backend)
    for name in ("zero_byte", "truncated", "not_a_video", "missing", "resolution_change")
    for backend in ("auto", "decord", "pyav")
    if (name, backend) != ("resolution_change", "decord")
]


@pytest.mark.parametrize("name,backend", _BAD_CASES)
def test_bad_videos_raise_naming_the_path(bad_videos, name, backend):
    path = bad_videos[name]
    with pytest.raises(VideoReadError) as err:
        sample_video(path, num_frames=8, backend=backend)
    assert err.value.path == str(path)
    assert str(path) in str(err.value) and err.value.reason
    if name == "resolution_change":
        assert "frame size changes mid-stream" in err.value.reason
    if name == "truncated" and backend != "decord":
        assert "truncated" in err.value.reason


def test_probe_bad_videos(bad_videos):
    for name in ("zero_byte", "not_a_video", "missing"):
        with pytest.raises(VideoReadError, match=name):
            probe_video(bad_videos[name])
    # probing reads only the header, which a truncated faststart file still has intact
    assert probe_video(bad_videos["truncated"]).num_frames == 40


@pytest.mark.parametrize("backend", ["auto", "decord", "pyav"])
def test_single_frame_video_reads(bad_videos, backend):
    sv = sample_video(bad_videos["single_frame"], num_frames=8, backend=backend)
    assert sv.indices.tolist() == [0] and sv.frames.shape == (1, 120, 160, 3)


def test_bad_arguments():
    with pytest.raises(ValueError):
        sample_video("x.mp4", backend="opencv")
    with pytest.raises(ValueError):
        sample_video("x.mp4", num_frames=0)
    with pytest.raises(ValueError):
        sample_video("x.mp4", size=(0, 10))


# --------------------------------------------------------------------------- prefetching


@pytest.mark.parametrize("num_workers", [0, 2])
def test_prefetch_keeps_order_and_passes_errors(synth_dir, bad_videos, num_workers):
    good = _videos(synth_dir)[:3]
    items = [good[0], bad_videos["zero_byte"], good[1], bad_videos["not_a_video"], good[2]]
    out = list(PrefetchLoader(items, lambda p: sample_video(p, num_frames=2), num_workers=num_workers))
    assert [item for item, _ in out] == items
    kinds = [type(res).__name__ for _, res in out]
    assert kinds == ["SampledVideo", "VideoReadError", "SampledVideo", "VideoReadError", "SampledVideo"]
    assert out[0][1].info.path == str(good[0]) and out[1][1].path == str(bad_videos["zero_byte"])


def test_prefetch_workers_use_one_decoder_thread_each():
    """With several workers, FFmpeg's own threads would only contend with the other worker's."""

    def threads_seen(item):
        return getattr(video._thread_defaults, "threads", None)

    assert [r for _, r in PrefetchLoader(["a", "b"], threads_seen, num_workers=2)] == [1, 1]
    assert [r for _, r in PrefetchLoader(["a"], threads_seen, num_workers=1)] == [None]  # sample_video's rule
    assert [r for _, r in PrefetchLoader(["a"], threads_seen, num_workers=2, decode_threads=3)] == [3]
    assert [r for _, r in PrefetchLoader(["a"], threads_seen, num_workers=0)] == [None]  # caller's thread
    with pytest.raises(ValueError):
        PrefetchLoader(["a"], threads_seen, decode_threads=-1)


def test_prefetch_wraps_unexpected_errors():
    def broken(item):
        raise KeyError(item)

    [(item, res)] = list(PrefetchLoader(["a.mp4"], broken, num_workers=1))
    assert isinstance(res, VideoReadError) and res.path == "a.mp4" and "KeyError" in res.reason


def test_prefetch_process_executor(synth_dir, bad_videos):
    items = [_videos(synth_dir)[0], bad_videos["missing"]]
    out = list(PrefetchLoader(items, num_workers=1, executor="process"))
    assert isinstance(out[0][1], SampledVideo) and len(out[0][1]) == 8
    assert isinstance(out[1][1], VideoReadError) and out[1][1].reason == "file not found"


# --------------------------------------------------------------------------- writing


def test_write_video_exact_frame_count_and_atomic(tmp_path):
    path = tmp_path / "out.mp4"
    assert write_video(path, _gradient_frames(23), fps=10.0) == 23
    assert len(decord.VideoReader(str(path))) == 23
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


def test_write_video_failure_leaves_nothing(tmp_path):
    def frames():
        yield from _gradient_frames(3)
        raise RuntimeError("renderer crashed")

    with pytest.raises(RuntimeError):
        write_video(tmp_path / "crash.mp4", frames(), fps=10.0)
    with pytest.raises(ValueError, match="even"):
        write_video(tmp_path / "odd.mp4", [np.zeros((15, 16, 3), np.uint8)], fps=10.0)
    with pytest.raises(ValueError, match="suffix"):
        write_video(tmp_path / "x.gif", [np.zeros((16, 16, 3), np.uint8)], fps=10.0)
    assert list(tmp_path.iterdir()) == []
