"""Optimizer step of the trainer: a batched micro-batch of 8 examples vs 8 one-example micro-steps (CPU).

Both trainers take the same step on the same examples (``batch_size=8, grad_accum=1`` against
``batch_size=1, grad_accum=8``; equal losses and gradients: tests/test_model_batched_train.py). They are
timed in turns, one optimizer step each per round, and the row reports the median of the per-round
ratios (the machine is shared: a neighbour's load hits both contenders of a round alike).

* default: the demo's model (``conf/model/spacevllm_tiny_learn.yaml``: 16 frames of 64x64, the demo's
  task mix with one-frame ``rec`` samples, its trainer settings) on synthetic videos. Target >= 3x.
* ``--real``: the real-width LLaVA-Video-7B preset at reduced depth (``--num-layers``, real widths and
  heads; vocabulary cut to the byte tokenizer as in gpu_profile) and ``--num-frames`` 384x384 frames,
  random weights in fp32, the preset's trainable parts (vision tower frozen) and gradient checkpointing:
  forward + backward of the batch, one example at a time vs together, on one model (see
  :func:`real_forward_backward`).

    python bench/bench_train_step.py [--threads 2] [--rounds 5] [--model spacevllm_tiny]
    python bench/bench_train_step.py --optimizer   # batched steps: per-parameter AdamW loop vs fused
    python bench/bench_train_step.py --real --num-layers 1 --num-frames 2 --rounds 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
# the demo's trainer settings (conf/demo.yaml's train_overrides), batch and accumulation set per contender
DEMO_TRAINER = {"lr": 3e-3, "warmup_steps": 30, "max_grad_norm": 5.0, "max_steps": 1000, "num_workers": 1,
                "device": "cpu", "loss_weights": {"lm": 0.3, "centre": 8.0}}
MODEL_NAMES = {"spacevllm_tiny_learn": "spacevllm_tiny_learn (the demo's model), 16 frames of 64x64",
               "spacevllm_tiny": "spacevllm_tiny (the tiny preset), 8 frames of 32x32"}
DEMO_MIX = {"task_weights": {"stvg": 1.0, "rec": 0.3}, "derive_tasks": ["rec"]}


def _queries(tmp: Path, num_videos: int):
    from stvg_plugin.data import read_queries
    from stvg_plugin.synth import generate_synthetic

    generate_synthetic(tmp, num_videos=num_videos, seed=100, max_queries_per_video=1, max_distractors=1,
                       duration_s=(4.0, 6.0))
    return read_queries(tmp / "annotations.jsonl")


def tiny_trainers(tmp: Path, threads: int | None, batch: int, names: tuple[str, ...] = ("per_example", "batched"),
                  num_videos: int = 16, model: str = "spacevllm_tiny_learn"):
    """The contenders (``per_example``, ``batched``; ``batched_adamw_loop``: batched with torch's per-parameter
    AdamW instead of the fused one) on a model config (``conf/model/<model>.yaml``; default
    the demo's) and the demo's data (``num_videos`` synthetic)."""
    from stvg_plugin.training import prepare

    spec = yaml.safe_load((ROOT / "conf" / "model" / f"{model}.yaml").read_text())
    queries = _queries(tmp / "synth", num_videos)
    out = {}
    shapes = {"per_example": (1, batch, {}), "batched": (batch, 1, {}),
              "batched_adamw_loop": (batch, 1, {"fused_optimizer": False})}
    for name in names:
        batch_size, grad_accum, extra = shapes[name]
        cfg = {**DEMO_TRAINER, "num_threads": threads, "batch_size": batch_size, "grad_accum": grad_accum, **extra}
        out[name] = prepare(spec, queries, tmp / name, trainer=cfg, resume=None, **DEMO_MIX)
    return out


def real_forward_backward(tmp: Path, threads: int, batch: int, num_layers: int, num_frames: int, rounds: int) -> dict:
    """The real-width reduced-depth LLaVA-Video preset (random weights, fp32, the preset's trainable parts
    and gradient checkpointing): forward + backward of ``batch`` examples, one at a time vs as one batch.

    One model serves both contenders (two would not fit beside other jobs in this machine's memory); the
    optimizer step is left out: AdamW over the same parameters costs the same in both.
    """
    from stvg_plugin.models.backbones import get_backbone
    from stvg_plugin.models.modeling_spacevllm import SpaceVLLMForGrounding
    from stvg_plugin.models.presets import build_config, resolve_spec, use_tokenizer_vocab
    from stvg_plugin.models.processing_spacevllm import SpaceVLLMProcessor
    from stvg_plugin.models.tokenizer import build_char_tokenizer
    from stvg_plugin.training.dataset import TrainData, expand_tasks
    from stvg_plugin.training.parts import set_trainable
    from stvg_plugin.training.run import enable_gradient_checkpointing

    spec = {**resolve_spec("spacevllm_7b"), "num_layers": num_layers, "num_frames": num_frames}
    tokenizer = build_char_tokenizer()
    config = build_config(spec)
    use_tokenizer_vocab(config.vlm_config, tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = SpaceVLLMForGrounding(config)
    model.processor = SpaceVLLMProcessor(tokenizer, get_backbone(spec["backbone"]).frame_processor_for(config), config)
    enable_gradient_checkpointing(model)
    set_trainable(model, spec["train_parts"])
    model.train()
    data = TrainData(model, expand_tasks(_queries(tmp / "synth", 8), ["rec"]), DEMO_MIX["task_weights"], seed=0,
                     num_workers=1)
    weights = {"lm": 0.3, "l1": 5.0, "giou": 2.0, "relevance": 1.0, "centre": 0.0}
    times: dict[str, list[float]] = {"per_example": [], "batched": []}
    for r in range(rounds):
        inputs = [ex.inputs for ex in data.examples(r, batch)]
        t0 = time.perf_counter()
        for x in inputs:
            (model([x], loss_weights=weights).loss / len(inputs)).backward()
        times["per_example"].append(time.perf_counter() - t0)
        model.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        model(inputs, loss_weights=weights).loss.backward()
        times["batched"].append(time.perf_counter() - t0)
        model.zero_grad(set_to_none=True)
    ratios = [a / b for a, b in zip(times["per_example"], times["batched"])]
    return {"per_example_s": statistics.median(times["per_example"]), "batched_s": statistics.median(times["batched"]),
            "ratio": statistics.median(ratios), "ratios": [round(x, 2) for x in ratios]}


def run(trainers: dict, rounds: int, warmup: int = 1) -> dict:
    """Optimizer steps in turns; the first trainer is the baseline, the second the contender."""
    times: dict[str, list[float]] = {name: [] for name in trainers}
    for r in range(warmup + rounds):
        for name, t in trainers.items():
            t0 = time.perf_counter()
            t.train_step()
            if r >= warmup:
                times[name].append(time.perf_counter() - t0)
    base, other = times.values()
    ratios = [a / b for a, b in zip(base, other)]
    return {**{f"{name}_s": statistics.median(ts) for name, ts in times.items()},
            "ratio": statistics.median(ratios), "ratios": [round(x, 2) for x in ratios]}


def optimizer_alone(trainers: dict, reps: int = 50) -> dict:
    """Gradient clipping + AdamW step alone (random gradients on every trainable parameter), median ms."""
    out = {}
    for name, t in trainers.items():
        params = [p for p in t.model.parameters() if p.requires_grad]
        times = []
        for _ in range(reps):
            for p in params:
                p.grad = torch.randn_like(p)
            t0 = time.perf_counter()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            t.optimizer.step()
            times.append(time.perf_counter() - t0)
        t.optimizer.zero_grad()
        out[f"{name}_optimizer_ms"] = round(1000 * statistics.median(times), 2)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads of each contender (default 1)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--real", action="store_true", help="the real-width reduced-depth LLaVA-Video preset")
    ap.add_argument("--num-layers", type=int, default=1)
    ap.add_argument("--num-frames", type=int, default=2)
    ap.add_argument("--model", default="spacevllm_tiny_learn",
                    help="conf/model/<name>.yaml for the tiny contenders (default: the demo's model; "
                         "spacevllm_tiny: the tiny preset, 8 frames of 32x32, the decoder without the demo model's extras)")
    ap.add_argument("--optimizer", action="store_true",
                    help="batched steps with torch's per-parameter AdamW loop vs the fused AdamW (the trainer's default)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        if args.real:
            row = real_forward_backward(Path(tmp), args.threads, args.batch, args.num_layers, args.num_frames,
                                        args.rounds)
            what = f"spacevllm_7b at {args.num_layers} layer(s), {args.num_frames} frames of 384x384, fp32"
            step = "forward + backward"
        else:
            names = ("batched_adamw_loop", "batched") if args.optimizer else ("per_example", "batched")
            trainers = tiny_trainers(Path(tmp), args.threads, args.batch, names, model=args.model)
            row = run(trainers, args.rounds)
            if args.optimizer:
                row.update(optimizer_alone(trainers))
            what = MODEL_NAMES.get(args.model, args.model)
            step = "optimizer step"
    row = {"name": "train_step_batched", "model": what, "batch": args.batch, "threads": args.threads, **row}
    print(f"{step} over {args.batch} examples, {what}, {args.threads} thread(s)")
    base = "batched_adamw_loop" if args.optimizer else "per_example"
    print(f"  {base}: {row[base + '_s']:.3f} s   batched: {row['batched_s']:.3f} s   "
          f"ratio {row['ratio']:.2f}x (per round {row['ratios']})")
    if args.optimizer:
        print(f"  clipping + AdamW step alone: loop {row['batched_adamw_loop_optimizer_ms']} ms, "
              f"fused {row['batched_optimizer_ms']} ms")
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
