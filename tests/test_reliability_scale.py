"""Scale: memory stays bounded when scoring 20,000 queries and when sampling a 2-hour video.

Scoring. ``stvg_plugin.metrics.evaluate`` is fed a generator over a 20,000-line predictions JSONL
twice: once with a 10-character ``raw_text`` per prediction and once with 2,000 characters. The two
runs differ only in that payload (20,000 x ~2 KB = ~40 MB of str objects), which no metric reads.
An engine that streams predictions (scores each and keeps only its per-query row) has the same
peak in both runs; one that holds every prediction until the end peaks ~40 MB higher in the second.
The bound: the difference of the two ``tracemalloc`` peaks must stay under 10 % of the payload.
(The queries and the per-query rows are O(n) by contract - ``evaluate`` takes a sequence of
queries and returns ``per_query`` - and are the same in both runs, so they cancel out.)

Sampling. A 2-hour video (7,200 frames at 1 fps, 128x128 px: 354 MB if every frame were decoded
to RGB) is sampled with ``num_frames=16`` in a child process; its peak RSS growth (``VmHWM`` reset
through ``/proc/self/clear_refs``) must stay under a quarter of what decoding all frames would
need. 128x128 rather than 16x16 so that "all frames" (354 MB) stands far above the decoders'
fixed buffers and allocator noise (a few tens of MB), which would swamp a 5.5 MB bound.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from stvg_plugin.data import GroundingQuery, iter_predictions
from stvg_plugin.metrics import evaluate
from stvg_plugin.video import probe_video, write_video

N_QUERIES = 20_000
TEXT_CHARS = 2_000


def _queries() -> list[GroundingQuery]:
    boxes = {f: [1.0, 2.0, 30.0, 40.0] for f in range(10, 30)}
    return [
        GroundingQuery(qid=f"q{i}", video="v.mp4", query="x", fps=10.0, num_frames=100, width=64, height=48,
                       span_frames=(10, 30), boxes=boxes)
        for i in range(N_QUERIES)
    ]


def _write_predictions(path: Path, text_chars: int) -> None:
    boxes = {str(f): [2.0, 2.0, 31.0, 41.0] for f in range(12, 28, 4)}
    with path.open("w", encoding="utf-8") as fh:  # test input, not a project output
        for i in range(N_QUERIES):
            fh.write(json.dumps({"qid": f"q{i}", "span_frames": [12, 28], "boxes": boxes,
                                 "raw_text": f"{i:08d}" + "a" * (text_chars - 8)}) + "\n")


def _peak_bytes(queries: list[GroundingQuery], path: Path) -> tuple[int, dict]:
    tracemalloc.start()
    try:
        result = evaluate(queries, iter_predictions(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, result.summary


@pytest.mark.scale
def test_scoring_20000_streamed_predictions_does_not_hold_them(tmp_path: Path) -> None:
    queries = _queries()
    light, heavy = tmp_path / "light.jsonl", tmp_path / "heavy.jsonl"
    _write_predictions(light, 10)
    _write_predictions(heavy, TEXT_CHARS)
    peak_light, summary_light = _peak_bytes(queries, light)
    peak_heavy, summary_heavy = _peak_bytes(queries, heavy)
    assert summary_light == summary_heavy and summary_light["num_queries"] == N_QUERIES
    assert summary_light["num_missing"] == 0 and summary_light["m_vIoU"] > 0
    payload = N_QUERIES * TEXT_CHARS
    extra = peak_heavy - peak_light
    assert extra < 0.10 * payload, (
        f"peak grew by {extra / 1e6:.1f} MB for {payload / 1e6:.0f} MB of raw_text never used by the metrics "
        f"(peaks {peak_light / 1e6:.1f} MB vs {peak_heavy / 1e6:.1f} MB): predictions are held, not streamed"
    )


_SAMPLE_IN_CHILD = """
import json, sys
from stvg_plugin.video import sample_video

def kb(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1])

path = sys.argv[1]
sample_video(path, num_frames=2)  # load the decoders' libraries first
out = {}
for backend in ("auto", "pyav"):
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset VmHWM to the current RSS
    base = kb("VmRSS")
    s = sample_video(path, num_frames=16, backend=backend)
    out[backend] = {"growth_kb": kb("VmHWM") - base, "shape": list(s.frames.shape), "indices": s.indices.tolist()}
print(json.dumps(out))
"""


def _long_frames(n: int, size: int):
    y, x = np.mgrid[0:size, 0:size]
    base = np.stack([x * 2, y * 2, (x + y)], axis=-1).astype(np.uint8)
    for i in range(n):
        frame = np.roll(base, i % size, axis=1)
        frame[8:24, 8:24] = (i * 7) % 256  # a changing patch: frames are not all alike
        yield frame


@pytest.mark.scale
def test_sampling_a_two_hour_video_keeps_memory_bounded(tmp_path: Path) -> None:
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux /proc to measure peak RSS")
    frames, size = 7200, 128
    path = tmp_path / "two_hours.mp4"
    assert write_video(path, _long_frames(frames, size), fps=1.0, preset="ultrafast") == frames
    info = probe_video(path)
    assert (info.num_frames, info.duration_s) == (frames, 7200.0)
    proc = subprocess.run([sys.executable, "-c", _SAMPLE_IN_CHILD, str(path)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    all_frames_kb = frames * size * size * 3 / 1024
    for backend, res in json.loads(proc.stdout.strip().splitlines()[-1]).items():
        assert res["shape"] == [16, size, size, 3]
        assert res["indices"][0] == 225 and res["indices"][-1] == 6975  # spread over the whole 2 hours
        assert res["growth_kb"] < all_frames_kb / 4, (backend, res["growth_kb"], all_frames_kb)
