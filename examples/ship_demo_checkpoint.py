"""Copy a finished ``stvg train`` run into the checkpoint folder ``stvg demo`` ships, with how it was made.

    .venv/bin/python examples/ship_demo_checkpoint.py OUT/decoder --videos 2400 --seed 100 --same-shape 0.4 --note "..."

Writes into ``stvg_plugin/assets/spacevllm_tiny_demo`` (``--dest``): the final model folder's files
(safetensors weights, config, tokenizer, frame processor), ``train_config.yaml`` (the run's composed
Hydra config), ``train_overrides.yaml`` (its command-line overrides), ``train_log.jsonl`` (one line per
optimizer step) and ``TRAINING.md`` (the exact commands, the data seed, wall time and the machine note).
The folder is replaced as a whole (written beside it, then renamed).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import yaml

DEST = Path(__file__).resolve().parents[1] / "stvg_plugin" / "assets" / "spacevllm_tiny_demo"
MODEL_FILES = ("model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json",
               "preprocessor_config.json")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="the stvg train output_dir (holds final/, .hydra/, train_log.jsonl)")
    ap.add_argument("--videos", type=int, required=True, help="training videos synthesized (conf/demo.yaml synth.train_videos)")
    ap.add_argument("--seed", type=int, required=True, help="their seed (synth.train_seed)")
    ap.add_argument("--same-shape", type=float, required=True,
                    help="their same_shape_distractors (synth.train_generator.same_shape_distractors)")
    ap.add_argument("--dest", type=Path, default=DEST)
    ap.add_argument("--note", default="", help="where and how it was trained (machine, load)")
    args = ap.parse_args()
    run = args.run.resolve()
    overrides = yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text())
    config = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines() if line.strip()]

    tmp = args.dest.with_name(args.dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in MODEL_FILES:
        shutil.copy2(run / "final" / name, tmp / name)
    shutil.copy2(run / ".hydra" / "config.yaml", tmp / "train_config.yaml")
    shutil.copy2(run / ".hydra" / "overrides.yaml", tmp / "train_overrides.yaml")
    shutil.copy2(run / "train_log.jsonl", tmp / "train_log.jsonl")
    portable = [o for o in overrides if not o.startswith(("annotations=", "output_dir="))]
    last = log[-1]
    lines = [
        "# The checkpoint `stvg demo` ships",
        "",
        "Made by the project's own trainer; `stvg demo train=true` (`make demo-train`) runs the same recipe from",
        "scratch (conf/demo.yaml: `synth.*`, `train_model`, `train_overrides`). Trained with the code of this commit.",
        "",
        "## Commands",
        "",
        "```bash",
        f"# training data: {args.videos} synthetic videos, seed={args.seed} (examples/learnability.py writes the same set)",
        f"stvg synth output_dir=DATA num_videos={args.videos} seed={args.seed} generator.max_queries_per_video=1 "
        f"generator.max_distractors=1 'generator.duration_s=[4.0,6.0]' generator.same_shape_distractors={args.same_shape} "
        "generator.workers=2",
        "stvg train annotations=DATA/annotations.jsonl output_dir=RUN " + " ".join(portable),
        "```",
        "",
        f"Steps: {last['step']}; training wall time {last['time_s']:.0f} s (train_log.jsonl `time_s`); "
        "final losses: " + ", ".join(f"{k} {v:.3f}" for k, v in last.items() if k.startswith("loss")) + ".",
        "",
        "Files: `model.safetensors` (weights), `config.json`, tokenizer and frame processor files (as",
        "`save_pretrained` wrote them), `train_config.yaml` (the composed Hydra config of the run),",
        "`train_overrides.yaml` (its overrides), `train_log.jsonl` (one line per optimizer step).",
    ]
    lines += ["", f"Model config (`{config['model'].get('preset')}` + the run's model group):", "", "```yaml",
              yaml.safe_dump(config["model"], sort_keys=False).strip(), "```"]
    if args.note:
        lines += ["", "## Where", "", args.note]
    (tmp / "TRAINING.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    shutil.rmtree(args.dest, ignore_errors=True)
    tmp.rename(args.dest)
    size = sum(p.stat().st_size for p in args.dest.iterdir())
    print(f"wrote {args.dest} ({size / 2**20:.2f} MiB)")


if __name__ == "__main__":
    main()
