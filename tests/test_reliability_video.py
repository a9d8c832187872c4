"""Valid but unusual streams (issue 16, item 2): each decodes like PyAV alone, or gets its true reason.

* two copies of one ``.ts`` concatenated (``cat a.ts a.ts``): repeated timestamps; the planning pass
  gives up on them and the fallback must decode from the start of the file, not from where the
  planning pass stopped;
* a ``.ts`` whose second half has another frame size: "frame size changes", not "stream ended";
* a raw H.264 elementary stream (``.h264``: no container, no timestamps, no seeking): decoded.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from stvg_plugin.video import VideoReadError, probe_video, sample_video, write_video


def _frames(n: int, height: int, width: int):
    for i in range(n):
        frame = np.zeros((height, width, 3), np.uint8)
        frame[..., 0] = (i * 8) % 256
        frame[:, : i % width, 1] = 200  # a bar whose length is the frame number
        yield frame


def _every_frame(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


@pytest.fixture(scope="module")
def streams(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("streams")
    small, big = root / "small.ts", root / "big.ts"
    write_video(small, _frames(30, 48, 64), 25, gop=10)
    write_video(big, _frames(30, 64, 96), 25, gop=10)
    out = {"twice": root / "twice.ts", "resized": root / "resized.ts", "raw": root / "raw.h264"}
    out["twice"].write_bytes(small.read_bytes() * 2)
    out["resized"].write_bytes(small.read_bytes() + big.read_bytes())
    with av.open(str(small)) as container, open(out["raw"], "wb") as fh:
        for packet in container.demux(container.streams.video[0]):
            if packet.size:
                fh.write(bytes(packet))
    return out


@pytest.mark.parametrize("name, total", [("twice", 60), ("raw", 30)])
def test_stream_decodes_like_pyav_alone(streams, name, total) -> None:
    path = streams[name]
    every = _every_frame(path)
    assert len(every) == total  # PyAV alone decodes them all
    for num_frames in (8, 5):
        sampled = sample_video(path, num_frames, backend="pyav")
        assert sampled.info.num_frames == total
        assert sampled.indices.max() >= total * 3 // 4  # frames from the end of the stream too
        np.testing.assert_array_equal(sampled.frames, every[sampled.indices])
    assert probe_video(path).num_frames == total


def test_frame_size_change_is_named(streams) -> None:
    with pytest.raises(VideoReadError, match="frame size changes mid-stream: frame 30 is 96x64"):
        sample_video(streams["resized"], 8, backend="pyav")


def test_boxes_follow_the_annotation_size_when_the_video_differs(synth_dir) -> None:
    """A video whose real size differs from the annotation's width/height: boxes are rescaled to the
    annotation's pixel space (where the ground truth is), and the rescale is recorded."""
    from dataclasses import replace

    from stvg_plugin.data import read_queries
    from stvg_plugin.models import load_grounder

    q = read_queries(synth_dir / "annotations.jsonl")[0]
    info = probe_video(q.video)
    assert (q.width, q.height) == (info.width, info.height)
    grounder = load_grounder({"preset": "spacevllm_tiny", "relevance_threshold": 0.0, "num_frames": 2})
    wrong = replace(q, qid="wrong_size", width=info.width * 3, height=info.height * 2)
    same, scaled = list(grounder.predict([q, wrong], progress=False))
    assert same.boxes and "boxes_rescaled" not in same.extra
    assert scaled.extra["boxes_rescaled"] == {"video_size": [info.width, info.height],
                                              "annotation_size": [wrong.width, wrong.height]}
    assert sorted(scaled.boxes) == sorted(same.boxes)
    for f, box in same.boxes.items():
        expected = [box[0] * 3, box[1] * 2, box[2] * 3, box[3] * 2]
        np.testing.assert_allclose(scaled.boxes[f], expected, rtol=1e-12)  # float64 products of the same values
