"""Video sampling speed: ``stvg_plugin.video`` against lmms-eval's own loader, side by side.

Rows (medians of repeats, one process, same file, warm page cache):

* ``sample32_vs_lmms``: 32 frames of a 20 s 720p 30 fps H.264 file (x264 default GOP of 250)
  with :func:`sample_video` vs lmms-eval 0.7.3 ``read_video(num_frm=32)`` (PyAV backend).
* ``sample32_resize384_vs_lmms``: the same, resized to 384 x 384 inside the decoder, vs plain
  ``read_video`` (which cannot resize; its resize afterwards is reported in ``details``).
* ``full_decode_floor``: decoding every frame with PyAV (threaded, nothing converted or kept)
  over :func:`sample_video`'s time: how far under the cost of touching every frame sampling gets.
* ``prefetch_2_vs_1_workers``: :class:`PrefetchLoader` throughput over 50 small synthetic videos
  with 2 worker threads vs 1 (process workers in ``details``).

Run ``python bench/bench_video.py [--quick]``; ``run(quick=True)`` uses tiny videos (seconds).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from _timing import median_time

from stvg_plugin.synth import generate_synthetic
from stvg_plugin.video import PrefetchLoader, probe_video, sample_video, write_video


def _moving_scene(num_frames: int, height: int, width: int) -> Iterator[np.ndarray]:
    """A gradient with moving squares and light noise: content x264 cannot compress to nothing."""
    rng = np.random.default_rng(0)
    base = np.zeros((height, width, 3), dtype=np.uint8)
    base[..., 0] = np.linspace(30, 200, width, dtype=np.uint8)[None, :]
    base[..., 2] = np.linspace(200, 30, height, dtype=np.uint8)[:, None]
    noise = rng.integers(0, 12, size=(height, width, 3), dtype=np.uint8)
    side = max(8, height // 6) // 2 * 2
    for i in range(num_frames):
        frame = base + noise
        for k, colour in enumerate(((240, 240, 40), (40, 220, 60), (230, 60, 200))):
            x = (i * (4 + 3 * k) * width // 640 + k * width // 3) % (width - side)
            y = (k + 1) * height // 4 - side // 2
            frame[y : y + side, x : x + side] = colour
        yield frame


def _full_decode(path: Path) -> int:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return sum(1 for _ in container.decode(stream))


def _resize_after(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(f).resize((size[1], size[0]), Image.BILINEAR)) for f in frames])


def _row(name: str, ratio: float, target: float | None, details: str) -> dict:
    met = True if target is None else ratio >= target
    return {"name": name, "ratio": round(ratio, 3), "target": target, "met": met, "details": details}


def _bench_single_file(workdir: Path, quick: bool) -> list[dict]:
    from lmms_eval.models.model_utils.load_video import read_video

    seconds, fps, (height, width) = (2, 30, (120, 160)) if quick else (20, 30, (720, 1280))
    repeats = 2 if quick else 5
    path = workdir / f"scene_{width}x{height}.mp4"
    write_video(path, _moving_scene(seconds * fps, height, width), fps, preset="veryfast")
    info = probe_video(path)
    n = 32
    size = (384, 384)

    t_ours = median_time(lambda: sample_video(path, num_frames=n), repeats)
    t_lmms = median_time(lambda: read_video(str(path), num_frm=n, backend="pyav"), repeats)
    t_ours_rs = median_time(lambda: sample_video(path, num_frames=n, size=size), repeats)
    t_lmms_rs = median_time(lambda: _resize_after(read_video(str(path), num_frm=n, backend="pyav"), size), repeats)
    t_pyav = median_time(lambda: sample_video(path, num_frames=n, backend="pyav"), repeats)
    t_full = median_time(lambda: _full_decode(path), repeats)

    what = f"{info.width}x{info.height} {info.num_frames} frames @ {info.fps:g} fps"
    if quick:
        what = f"QUICK smoke sizes, ratios not meaningful; {what}"
    return [
        _row(
            "sample32_vs_lmms",
            t_lmms / t_ours,
            1.0,
            f"{what}: sample_video {t_ours * 1e3:.0f} ms vs lmms read_video {t_lmms * 1e3:.0f} ms "
            f"(our PyAV backend {t_pyav * 1e3:.0f} ms)",
        ),
        _row(
            "sample32_resize384_vs_lmms",
            t_lmms / t_ours_rs,
            1.1,
            f"resize in decode {t_ours_rs * 1e3:.0f} ms vs read_video {t_lmms * 1e3:.0f} ms "
            f"(+PIL resize after: {t_lmms_rs * 1e3:.0f} ms, ratio {t_lmms_rs / t_ours_rs:.2f})",
        ),
        _row(
            "full_decode_floor",
            t_full / t_ours,
            None,
            f"PyAV decode of all {info.num_frames} frames {t_full * 1e3:.0f} ms / sample_video {t_ours * 1e3:.0f} ms",
        ),
    ]


def _bench_prefetch(workdir: Path, quick: bool) -> list[dict]:
    num_videos = 8 if quick else 50
    repeats = 1 if quick else 3
    ann = generate_synthetic(
        workdir / "many", num_videos=num_videos, seed=0, duration_s=(6.0, 10.0), write_hcstvg_json=False
    )
    videos = sorted(ann.parent.glob("video_*.mp4"))

    def drain(workers: int, executor: str = "thread") -> None:
        for _, res in PrefetchLoader(videos, num_workers=workers, executor=executor):
            if not hasattr(res, "frames"):
                raise RuntimeError(f"bench video failed: {res}")

    t1 = median_time(lambda: drain(1), repeats)
    t2 = median_time(lambda: drain(2), repeats)
    t_proc = median_time(lambda: drain(2, "process"), 1)
    return [
        _row(
            "prefetch_2_vs_1_workers",
            t1 / t2,
            1.6,
            f"{num_videos} videos x 8 frames: 1 thread {num_videos / t1:.0f}/s, 2 threads {num_videos / t2:.0f}/s, "
            f"2 processes {num_videos / t_proc:.0f}/s (incl. spawn); cpus={os.cpu_count()}",
        ),
    ]


def run(quick: bool = False) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="stvg_bench_video_") as tmp:
        workdir = Path(tmp)
        return _bench_single_file(workdir, quick) + _bench_prefetch(workdir, quick)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny videos, a few seconds")
    args = parser.parse_args()
    rows = run(quick=args.quick)
    print(f"{'measure':<30} {'ratio':>7} {'target':>7}  met")
    for r in rows:
        target = "-" if r["target"] is None else f"{r['target']:g}"
        print(f"{r['name']:<30} {r['ratio']:>7.2f} {target:>7}  {'yes' if r['met'] else 'NO'}")
        print(f"{'':<4}{r['details']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
