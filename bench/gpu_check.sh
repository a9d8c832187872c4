#!/usr/bin/env bash
# Every GPU check of the model core in one run, under 10 minutes on one H200 (141 GB):
#   1. the full-depth inference profile at 64 frames for both SpaceVLLM 7B presets (prefill time and
#      MFU, per-query latency with the video cached, peak memory),
#      and of the prompted Qwen2.5-VL 7B preset (zero-shot, PromptedGrounder: encode-once prefix at
#      the preset's max_pixels, 252 visual tokens per 640x360 frame, ~17k prefix tokens, answers of
#      up to 256 tokens extending the cached prefix);
#   2. one bf16 training step (fp32 master weights, bf16 autocast, gradient checkpointing, frozen
#      vision tower) with LoRA on the LLM for both presets and with the full LLM for LLaVA-Video, and
#      each step's peak memory.
# Random weights, nothing downloaded. Usage (repository root, the project's venv active):
#   bash bench/gpu_check.sh [OUT_DIR]        # default OUT_DIR: $OUT or bench_out/
# Each check writes OUT_DIR/<name>.json (+ .log); a failed check (e.g. out of memory) is reported
# and the others still run; the summary table at the end is what goes into BENCHMARKS.md.
set -uo pipefail
OUT_DIR=${1:-${OUT:-bench_out}}
PY=${PY:-python}
LIMIT=${LIMIT:-95}  # seconds per check; 6 checks + start-up stay under 10 minutes
# Estimate for the prompted check (no GPU was lent to measure it): ~14 GB of bf16 weights; a 64-frame
# prefill of ~450 TFLOP (LLM ~245 + its attention ~120 + vision tower ~85) is ~1-3 s at 15-45 % MFU,
# 4 of them (the first counted by FlopCounterMode); 2 answers of <= 256 greedy steps at ~25 ms each
# (eager transformers) ~13 s; model build + imports ~20 s: ~45 s in all, peak ~20 GB.
mkdir -p "$OUT_DIR"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
START=$(date +%s)

check() {
  local name=$1
  shift
  local t0=$(date +%s)
  if timeout "$LIMIT" "$PY" bench/gpu_profile.py --device cuda "$@" --out "$OUT_DIR/$name.json" >"$OUT_DIR/$name.log" 2>&1; then
    echo "ok     $name ($(( $(date +%s) - t0 )) s)"
  else
    echo "FAILED $name (exit $?, $(( $(date +%s) - t0 )) s): $(grep -m1 -E 'Error|error' "$OUT_DIR/$name.log" | cut -c1-200)"
  fi
}

check infer_llava_video_64f --preset spacevllm_7b --num-frames 64 --queries 4
check infer_qwen25vl_64f --preset spacevllm_qwen25vl_7b --num-frames 64 --queries 4
check infer_prompted_qwen25vl_64f --preset prompted_qwen2_5_vl_7b --num-frames 64 --queries 2
check train_lora_llava_video_64f --preset spacevllm_7b --num-frames 64 --queries 1 --train lora
check train_lora_qwen25vl_64f --preset spacevllm_qwen25vl_7b --num-frames 64 --queries 1 --train lora
check train_full_llava_video_64f --preset spacevllm_7b --num-frames 64 --queries 1 --train full

"$PY" - "$OUT_DIR" <<'PYEOF'
import json, pathlib, sys
rows = []
for path in sorted(pathlib.Path(sys.argv[1]).glob("*.json")):
    r = json.loads(path.read_text())
    rows.append((path.stem, r.get("prefix_tokens"), r.get("prefill_s"), r.get("prefill_mfu"), r.get("per_query_s_median"),
                 r.get("peak_memory_gib"), r.get("train_step_s"), r.get("train_peak_memory_gib")))
fmt = lambda v, f: "-" if v is None else format(v, f)
print("| check | prefix tokens | prefill s | prefill MFU | per-query s | inference peak GiB | train step s | train peak GiB |")
print("|---|---|---|---|---|---|---|---|")
for name, tok, pre, mfu, q, mem, ts, tm in rows:
    print(f"| {name} | {tok} | {fmt(pre, '.3f')} | {fmt(mfu, '.1%')} | {fmt(q, '.3f')} | {fmt(mem, '.1f')} | {fmt(ts, '.2f')} | {fmt(tm, '.1f')} |")
PYEOF
echo "total $(( $(date +%s) - START )) s"
