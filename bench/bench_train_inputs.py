"""Building one training step's inputs (8 examples of the demo's model): the vectorised frame path and
remembered token ids vs the PIL image processor per frame and tokenizing every text again.

The trainer decodes every training video once, at the model's frame size, and builds each step's
examples from those frames (``TrainData.examples``: frames -> pixel values, prompt -> token ids). Both
paths give bit-identical inputs (tests/test_frame_preprocessing.py); they are timed in turns on the same
steps, and the row reports the median of the per-round ratios and each path's median time per step.

    python bench/bench_train_inputs.py [--rounds 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


@contextmanager
def per_frame_processor_and_no_id_cache():
    """The inputs path as it was: every frame through the PIL processor, every text through the tokenizer."""
    from stvg_plugin.models.backbones import llava_onevision
    from stvg_plugin.models.processing_spacevllm import SpaceVLLMProcessor

    fast, cached = llava_onevision.pixels_without_resize, SpaceVLLMProcessor._ids
    llava_onevision.pixels_without_resize = lambda processor, frames: None
    SpaceVLLMProcessor._ids = lambda self, text: list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) \
        if text else []
    try:
        yield
    finally:
        llava_onevision.pixels_without_resize, SpaceVLLMProcessor._ids = fast, cached


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    sys.path.insert(0, str(HERE))
    from bench_train_step import tiny_trainers

    with tempfile.TemporaryDirectory() as tmp:
        data = tiny_trainers(Path(tmp), 1, args.batch, names=("batched",))["batched"].data
        times: dict[str, list[float]] = {"now": [], "before": []}
        for r in range(args.rounds + 1):
            for name in ("before", "now"):
                t0 = time.perf_counter()
                if name == "before":
                    with per_frame_processor_and_no_id_cache():
                        data.examples(r, args.batch)
                else:
                    data.examples(r, args.batch)
                if r:  # round 0 warms both (and fills the id cache once, as the trainer's first step does)
                    times[name].append(time.perf_counter() - t0)
    ratios = [b / n for b, n in zip(times["before"], times["now"])]
    row = {"name": "train_inputs", "batch": args.batch, "before_s": statistics.median(times["before"]),
           "now_s": statistics.median(times["now"]), "ratio": statistics.median(ratios)}
    print(f"inputs of one training step ({args.batch} examples, demo model): per-frame processor + tokenizer "
          f"{row['before_s'] * 1e3:.1f} ms, vectorised + remembered ids {row['now_s'] * 1e3:.1f} ms, "
          f"ratio {row['ratio']:.2f}x ({args.rounds} rounds)")
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
