"""Fine-tune the model core on a Uni-STG-style mix (SpaceVLLM, notes §3): VTG + REC + STVG in one run.

SpaceVLLM trains on 50K temporal-grounding, 320K referring-expression and 110K synthetic STVG
samples. Here each part is a unified JSONL (``task`` = ``tvg`` / ``rec`` / ``stvg``; convert
benchmarks with ``stvg_plugin.adapters.load_benchmark`` first); this script merges them into one
annotation file, sets per-task sampling weights, and trains with ``stvg_plugin.training.fit``.

7B on GPUs (queries + decoder + projector trained, LoRA on the LLM; multi-GPU via accelerate)::

    accelerate launch examples/finetune_unistg.py --model spacevllm_7b \\
        --backbone-path /models/LLaVA-Video-7B-Qwen2 --stvg stvg.jsonl --tvg charades.jsonl --rec refcoco.jsonl \\
        --out outputs/unistg --max-steps 20000 --lora

Smoke run on CPU with the tiny preset and synthetic data (tvg/rec derived from the stvg annotations)::

    .venv/bin/stvg synth output_dir=outputs/synth num_videos=20
    .venv/bin/python examples/finetune_unistg.py --model spacevllm_tiny --stvg outputs/synth/annotations.jsonl \\
        --derive tvg rec --out outputs/unistg_tiny --max-steps 20 --trainer cpu_tiny
"""

from __future__ import annotations

import argparse
from pathlib import Path

from omegaconf import OmegaConf

from stvg_plugin.adapters import load_benchmark
from stvg_plugin.data import write_queries
from stvg_plugin.training import fit

CONF = Path(__file__).resolve().parent.parent / "conf"
# SpaceVLLM's mix proportions (50K VTG : 320K REC : 110K STVG), used as sampling weights by default
UNISTG_WEIGHTS = {"tvg": 50.0, "rec": 320.0, "stvg": 110.0}


def trainer_config(name: str, overrides: dict) -> dict:
    """A ``conf/trainer/<name>.yaml`` (with its defaults) plus overrides, as a plain dict."""
    cfg = OmegaConf.load(CONF / "trainer" / f"{name}.yaml")
    for parent in [d for d in cfg.pop("defaults", []) if d != "_self_"]:
        cfg = OmegaConf.merge(OmegaConf.load(CONF / "trainer" / f"{parent}.yaml"), cfg)
    return {**OmegaConf.to_container(cfg, resolve=True), **overrides}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="spacevllm_tiny", help="preset name (stvg_plugin.models.presets)")
    ap.add_argument("--backbone-path", default=None, help="local transformers checkpoint of the base VLM")
    ap.add_argument("--stvg", type=Path, help="unified JSONL of STVG samples")
    ap.add_argument("--tvg", type=Path, help="unified JSONL of temporal-grounding samples")
    ap.add_argument("--rec", type=Path, help="unified JSONL of referring-expression samples (one image each)")
    ap.add_argument("--derive", nargs="*", default=[], choices=["tvg", "rec"], help="also derive from --stvg")
    ap.add_argument("--weights", nargs=3, type=float, metavar=("TVG", "REC", "STVG"), default=None)
    ap.add_argument("--trainer", default="default", help="conf/trainer/<name>.yaml")
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--lora", action="store_true", help="LoRA r=16 on the LLM's q/k/v/o projections")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    queries = []
    for path in (args.stvg, args.tvg, args.rec):
        if path is not None:
            queries += load_benchmark("unified", str(path))
    if not queries:
        ap.error("give at least one of --stvg / --tvg / --rec")
    args.out.mkdir(parents=True, exist_ok=True)
    write_queries(args.out / "mix.jsonl", queries)  # the exact training set, for the record
    weights = dict(zip(("tvg", "rec", "stvg"), args.weights)) if args.weights else dict(UNISTG_WEIGHTS)
    spec = {"preset": args.model, **({"backbone_path": args.backbone_path} if args.backbone_path else {})}
    lora = {"r": 16, "alpha": 32, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]} if args.lora else None
    parts = ["queries", "decoder", "projector", "llm"] if args.lora else ["queries", "decoder", "projector", "llm",
                                                                           "vision_tower"]
    trainer = trainer_config(args.trainer, {"max_steps": args.max_steps} if args.max_steps else {})
    summary = fit(spec, queries, args.out, trainer=trainer, task_weights=weights, derive_tasks=args.derive,
                  train_parts=parts, lora=lora)
    print(f"tasks sampled from: {summary['tasks']}; model in {summary['final']}")


if __name__ == "__main__":
    main()
