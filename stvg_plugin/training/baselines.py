"""Chance level: seeded random spans and boxes, scored with the same metrics as a trained model.

Why: a learnability number means something only next to what guessing gets. The random predictor
draws, per query, a span between two uniform frame indices and one box (uniform centre, sides
uniform in 10-60 % of the frame) held over that span; it never looks at the video or the text.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from stvg_plugin.data import GroundingPrediction, GroundingQuery, frames_to_seconds


def random_prediction(q: GroundingQuery, rng: np.random.Generator) -> GroundingPrediction:
    n = max(int(q.num_frames), 1)
    a, b = sorted(int(v) for v in rng.integers(0, n + 1, size=2))
    if b == a:
        b = min(a + 1, n)
        a = b - 1
    w, h = max(q.width, 1), max(q.height, 1)
    bw, bh = rng.uniform(0.1, 0.6) * w, rng.uniform(0.1, 0.6) * h
    cx, cy = rng.uniform(bw / 2, w - bw / 2), rng.uniform(bh / 2, h - bh / 2)
    box = [cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2]
    fps = q.fps if q.fps > 0 else 1.0
    return GroundingPrediction(qid=q.qid, span_frames=(a, b), span_s=frames_to_seconds(a, b, fps),
                               boxes={f: list(box) for f in range(a, b)}, span_source="random")


def random_predictions(queries: Sequence[GroundingQuery], seed: int = 0) -> Iterator[GroundingPrediction]:
    """One random prediction per query; the same seed gives the same predictions."""
    rng = np.random.default_rng(seed)
    for q in queries:
        yield random_prediction(q, rng)


def main(argv: list[str] | None = None) -> int:
    """``python -m stvg_plugin.training.baselines ANNOTATIONS PREDICTIONS [--seed S]``: chance predictions."""
    import argparse

    from stvg_plugin.data import read_queries, write_jsonl

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("annotations", help="unified JSONL annotations")
    parser.add_argument("predictions", help="predictions JSONL to write")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    n = write_jsonl(args.predictions, random_predictions(read_queries(args.annotations), seed=args.seed))
    print(f"wrote {n} chance predictions to {args.predictions}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
