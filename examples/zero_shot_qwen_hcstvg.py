"""Zero-shot Qwen2.5-VL on HC-STVG through the stock lmms-eval CLI, scored by stvg's metric engine.

Needs (nothing is downloaded):
  * a local transformers checkpoint of Qwen2.5-VL (e.g. Qwen2.5-VL-7B-Instruct), given as --model-path
    or STVG_QWEN2_5_VL_7B;
  * HC-STVG v1: the native test.json (STVG_HCSTVG_V1_ANNOTATIONS) and the video folder
    (STVG_HCSTVG_V1_VIDEOS).

    .venv/bin/python examples/zero_shot_qwen_hcstvg.py --model-path /models/Qwen2.5-VL-7B-Instruct \\
        --out outputs/qwen_hcstvg [--limit 50] [--num-frames 16] [--device cuda]

Runs ``stvg lmms-eval --model stvg_prompted ... --tasks stvg_hcstvg_v1 --log_samples`` (real exit
status), turns the logged samples into a predictions JSONL, and re-scores it with ``stvg evaluate``
(the same numbers, plus the per-query table for error analysis).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path


def fail(message: str) -> None:
    print(f"zero_shot_qwen_hcstvg: {message}", file=sys.stderr)
    raise SystemExit(2)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-path", default=os.environ.get("STVG_QWEN2_5_VL_7B"))
    ap.add_argument("--out", type=Path, default=Path("outputs/qwen_hcstvg"))
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--num-frames", type=int, default=16)
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    if not args.model_path or not (Path(args.model_path) / "config.json").is_file():
        fail("a local Qwen2.5-VL checkpoint folder is needed: pass --model-path DIR or set STVG_QWEN2_5_VL_7B "
             f"(got {args.model_path!r}; nothing is downloaded)")
    ann = os.environ.get("STVG_HCSTVG_V1_ANNOTATIONS")
    videos = os.environ.get("STVG_HCSTVG_V1_VIDEOS")
    if not ann or not Path(ann).is_file():
        fail(f"set STVG_HCSTVG_V1_ANNOTATIONS to HC-STVG v1's test.json (got {ann!r})")
    if not videos or not Path(videos).is_dir():
        fail(f"set STVG_HCSTVG_V1_VIDEOS to the HC-STVG v1 video folder (got {videos!r})")

    stvg = [sys.executable, "-m", "stvg_plugin.cli"]
    lmms_out = args.out / "lmms_eval"
    cmd = [*stvg, "lmms-eval", "--model", "stvg_prompted",
           "--model_args", f"pretrained={args.model_path},num_frames={args.num_frames}",
           "--tasks", "stvg_hcstvg_v1", "--output_path", str(lmms_out), "--log_samples", "--device", args.device,
           "--batch_size", "1"] + (["--limit", str(args.limit)] if args.limit else [])
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    preds = args.out / "predictions.jsonl"
    subprocess.run([sys.executable, "-m", "lmms_tasks.results", str(lmms_out), "stvg_hcstvg_v1", str(preds)],
                   check=True)
    subprocess.run([*stvg, "evaluate", "benchmark=hcstvg_v1", f"annotations={ann}", f"video_root={videos}",
                    f"predictions={preds}", f"output_dir={args.out / 'eval'}"], check=True)
    print(f"per-query results: {args.out / 'eval' / 'per_query.jsonl'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
