"""Frame sampling on real MP4 files: exact indices/timestamps, both backends, bad input, prefetching."""

from __future__ import annotations

from pathlib import Path

import decord
import numpy as np
import pytest

from stvg_plugin.video import (
    PrefetchLoader,
    SampledVideo,
    VideoReadError,
    probe_video,
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
