"""Benchmark: vectorised ``evaluate`` vs a straightforward per-frame Python loop (TubeDETR protocol).

Both score the same synthetic benchmark (VidSTG/HC-STVG-like: 5 fps sampling, up to 200 sampled
frames per query); the numbers must agree to 1e-9 before any timing is reported.
Run: ``.venv/bin/python bench/bench_metrics.py [--quick]``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from stvg_plugin.data import GroundingPrediction, GroundingQuery
from stvg_plugin.metrics import evaluate

TARGET_RATIO = 10.0


def make_benchmark(num_queries: int, seed: int = 0) -> tuple[list[GroundingQuery], list[GroundingPrediction]]:
    """Synthetic queries; box lists come from a small shared pool so 10k queries stay light in memory."""
    rng = random.Random(seed)
    pool = []
    for _ in range(64):
        x, y = rng.uniform(0, 500), rng.uniform(0, 300)
        pool.append([x, y, x + rng.uniform(10, 200), y + rng.uniform(10, 150)])
    queries, preds = [], []
    for i in range(num_queries):
        fps = rng.choice([25.0, 29.97, 30.0])
        n = rng.randint(300, 1500)  # 50..250 s at 5 fps -> capped at 200 sampled frames
        seg = [0, n]
        gs = rng.randint(0, n - 50)
        ge = min(n, gs + rng.randint(30, 400))
        gt = {f: pool[(f * 7 + i) % 64] for f in range(gs, ge)}
        queries.append(
            GroundingQuery(
                qid=f"q{i}",
                video=f"v{i}.mp4",
                query="x",
                fps=fps,
                num_frames=n,
                span_frames=(gs, ge),
                boxes=gt,
                extra={"segment": seg},
            )
        )
        ps = max(0, gs + rng.randint(-100, 100))
        pe = ps + rng.randint(10, 400)
        step = max(1, round(fps / 5))
        boxes = {f: pool[(f * 5 + i) % 64] for f in range(0, n, step)}
        preds.append(GroundingPrediction(qid=f"q{i}", span_frames=(ps, pe), boxes=boxes))
    return queries, preds


def _frame_ids(video_fps: float, start: int, end: int) -> list[int]:
    rate = 5 / video_fps
    ids = [start]
    for f in range(start, end):
        if int(ids[-1] * rate) < int(f * rate):
            ids.append(f)
    if len(ids) > 200:
        ids = [ids[(j * len(ids)) // 200] for j in range(200)]
    return ids


def _iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def loop_evaluate(queries, preds) -> list[tuple[float, float, float]]:
    """Per-query, per-frame loop (the way the reference evaluators are written); missing box -> IoU 0."""
    out = []
    for q, p in zip(queries, preds):
        seg = q.extra["segment"]
        frames = _frame_ids(q.fps, seg[0], seg[1])
        (gs, ge), (ps, pe) = q.span_frames, p.span_frames
        inter = min(ge, pe) - max(gs, ps)
        tiou = 0.0 if inter <= 0 else inter / ((ge - gs) + (pe - ps) - inter)
        union = 0
        viou = gt_viou = 0.0
        n_gt = 0
        for f in frames:
            if min(gs, ps) <= f < max(ge, pe):
                union += 1
            if gs <= f < ge:
                n_gt += 1
                box = p.boxes.get(f)
                iou = _iou(box, q.boxes[f]) if box is not None else 0.0
                gt_viou += iou
                if ps <= f < pe:
                    viou += iou
        out.append((tiou, viou / max(union, 1), gt_viou / max(n_gt, 1)))
    return out


def run(quick: bool = False) -> list[dict]:
    """Time both implementations side by side; rows for ``bench/run_all.py``."""
    num, repeats = (300, 3) if quick else (10_000, 5)
    queries, preds = make_benchmark(num)
    fast_times, loop_times, fast_cpu, loop_cpu = [], [], [], []
    for _ in range(repeats):  # interleaved, so machine noise hits both sides alike
        t0, c0 = time.perf_counter(), time.process_time()
        res = evaluate(queries, preds)
        fast_times.append(time.perf_counter() - t0)
        fast_cpu.append(time.process_time() - c0)
        t0, c0 = time.perf_counter(), time.process_time()
        ref = loop_evaluate(queries, preds)
        loop_times.append(time.perf_counter() - t0)
        loop_cpu.append(time.process_time() - c0)
    for row, (tiou, viou, gt_viou) in zip(res.per_query, ref):
        assert abs(row["tIoU"] - tiou) <= 1e-9 and abs(row["vIoU"] - viou) <= 1e-9, row["qid"]
        assert abs(row["gt_vIoU"] - gt_viou) <= 1e-9, row["qid"]
    fast, loop = statistics.median(fast_times), statistics.median(loop_times)
    ratio = loop / fast
    cpu_ratio = statistics.median(loop_cpu) / statistics.median(fast_cpu)  # less sensitive to other processes
    return [
        {
            "name": f"metrics.evaluate tubedetr ({num} queries)",
            "ratio": ratio,
            "target": TARGET_RATIO,
            "met": ratio >= TARGET_RATIO,
            "details": {
                "evaluate_median_s": round(fast, 4),
                "loop_median_s": round(loop, 4),
                "evaluate_min_s": round(min(fast_times), 4),  # noise check: min/min vs median/median
                "loop_min_s": round(min(loop_times), 4),
                "repeats": repeats,
                "cpu_ratio": round(cpu_ratio, 2),
                "m_vIoU": res.summary["m_vIoU"],
                "rows_agree_to": 1e-9,
            },
        }
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="300 queries (smoke test)")
    for r in run(quick=parser.parse_args().quick):
        d = r["details"]
        print(
            f"{r['name']}: evaluate {d['evaluate_median_s']:.3f} s, loop {d['loop_median_s']:.3f} s "
            f"(median of {d['repeats']}) -> {r['ratio']:.1f}x, cpu-time {d['cpu_ratio']:.1f}x "
            f"(target {r['target']:.0f}x, met={r['met']})"
        )
