"""Per-step time of batched greedy decoding: 8 queries against one cached video prefix (tiny model, CPU).

Every language-model call of ``ground_prefix_many`` with one new token per row and 8 rows is timed
(hooks around the LM forward); the row reports the median over those steps. The prefix is made long
(``--frames`` frames) so that a step's cost depends on how the KV cache grows: a cache that is
concatenated into new tensors at each step copies all ``8 x kv`` keys and values every step, one that
writes into preallocated room does not. eos is disabled so every row decodes ``--steps`` tokens.

Run ``python bench/bench_decode_step.py [--frames 16] [--steps 48] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from stvg_plugin.data import read_queries
from stvg_plugin.models import load_grounder
from stvg_plugin.synth import generate_synthetic

QUERIES = ["the red circle", "the blue square moving left", "the small green triangle", "the yellow star",
           "a purple shape that stops", "the object entering from the right", "the largest orange square",
           "the cyan circle after it turns"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--frame-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=48)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        generate_synthetic(Path(tmp), num_videos=1, seed=0)
        video = read_queries(Path(tmp) / "annotations.jsonl")[0].video
        grounder = load_grounder({"preset": "spacevllm_tiny", "num_frames": args.frames,
                                  "frame_size": [args.frame_size, args.frame_size], "max_new_tokens": args.steps})
        model = grounder.model
        prefix = grounder.encode(video)
        proc = model._require_processor()
        proc.eos_token_id = model.backbone.lm_head.out_features - 1  # (almost) never produced: rows run --steps tokens
        lm = model.backbone.language_model
        step_times: dict[str, list[float]] = {"concat": [], "in_place": []}
        current: list[str] = []
        start: list[float] = []

        def pre(_mod, _args, kwargs):
            start.append(time.perf_counter())

        def post(_mod, _args, kwargs, _out):
            t0 = start.pop()
            emb = kwargs.get("inputs_embeds")
            if emb is not None and emb.shape[:2] == (len(QUERIES), 1) and current:
                step_times[current[0]].append(time.perf_counter() - t0)

        roomy = model._expand_cache
        variants = {"in_place": roomy, "concat": lambda cache, batch, room=0: roomy(cache, batch, 0)}
        h1 = lm.register_forward_pre_hook(pre, with_kwargs=True)
        h2 = lm.register_forward_hook(post, with_kwargs=True)
        texts: dict[str, list[str]] = {}
        with torch.inference_mode():
            for rep in range(args.repeats + 1):
                for name, fn in variants.items():  # in turns: a load burst on the shared cores hits both
                    model._expand_cache = fn
                    current[:] = [name] if rep else []  # the first round warms up
                    texts[name] = [p.raw_text for p in grounder.ground_prefix_many(prefix, QUERIES)]
        model._expand_cache = roomy
        h1.remove()
        h2.remove()
    assert texts["concat"] == texts["in_place"], "the two caches must give the same answers"
    for name, times in step_times.items():
        print(f"decode_step_8_rows[{name}] frames={args.frames} prefix_tokens={prefix.length} steps={args.steps} "
              f"median_step_ms={1000 * statistics.median(times):.3f} "
              f"last_quarter_step_ms={1000 * statistics.median(times[-len(times) // 4:]):.3f} n={len(times)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
