"""Real-size profile on a GPU: the 7B-size model with random weights in bf16, 64 frames.

Measures prefill latency (encode the video prefix), per-query latency with the video cached,
tokens/s of the answer, peak memory and the prefill's model FLOPs utilisation (MFU) against the
card's peak. Targets (issue 8): per-query latency < 0.5 s with the video cached; prefill MFU >= 40%.

    python bench/gpu_profile.py --device cuda --preset spacevllm_7b --num-frames 64 --peak-tflops 989
    python bench/gpu_profile.py --device cpu --preset spacevllm_tiny --num-frames 8   # harness smoke

Random weights make the answers random text: the greedy loop then runs to ``max_new_tokens``, which
is the worst case for per-query latency. Nothing is downloaded; weights are random-initialised.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np
import torch


def build_random_model(preset: str, device: str, dtype: torch.dtype):
    """The preset's architecture with random weights, materialised directly on ``device``."""
    from stvg_plugin.models.backbones import get_backbone
    from stvg_plugin.models.modeling_spacevllm import SpaceVLLMForGrounding
    from stvg_plugin.models.presets import build_config, build_tiny_model, resolve_spec
    from stvg_plugin.models.processing_spacevllm import SpaceVLLMProcessor
    from stvg_plugin.models.tokenizer import build_char_tokenizer

    spec = resolve_spec(preset)
    if spec.get("size") == "tiny":
        return build_tiny_model(preset).to(device=device, dtype=dtype).eval()
    config = build_config(spec)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # allocate in bf16 directly: no fp32 copy of 8B parameters
    try:
        with torch.device(device):
            model = SpaceVLLMForGrounding(config)
    finally:
        torch.set_default_dtype(previous)
    tokenizer = build_char_tokenizer()
    frame_size = tuple(model.config.frame_size or (384, 384))
    model.processor = SpaceVLLMProcessor(tokenizer, get_backbone(spec["backbone"]).build_frame_processor(frame_size),
                                         model.config)
    return model.eval()


def synthetic_sample(num_frames: int, height: int, width: int, fps: float = 30.0):
    from stvg_plugin.video import SampledVideo, VideoInfo

    total = int(num_frames * fps)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, size=(num_frames, height, width, 3), dtype=np.uint8)
    indices = np.linspace(0, total - 1, num_frames).astype(np.int64)
    info = VideoInfo(path="synthetic", fps=fps, num_frames=total, width=width, height=height)
    return SampledVideo(frames=frames, indices=indices, timestamps=indices / fps, info=info)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def profile(preset: str, device: str, num_frames: int, queries: int, peak_tflops: float, dtype: str) -> dict:
    from stvg_plugin.models.flops import count_grounding_flops

    torch_dtype = getattr(torch, dtype)
    model = build_random_model(preset, device, torch_dtype)
    model.config.num_frames = num_frames
    h, w = model.config.frame_size or (384, 384)
    sample = synthetic_sample(num_frames, h, w)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        model.encode_video(sample)  # warm-up (kernels, allocator)
        _sync(device)
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            prefix = model.encode_video(sample)
            _sync(device)
            times.append(time.perf_counter() - t0)
        prefill_s = statistics.median(times)
        per_query, tokens = [], []
        for i in range(queries):
            t0 = time.perf_counter()
            pred = model.ground_prefix(prefix, f"the person number {i} who walks to the door")
            _sync(device)
            per_query.append(time.perf_counter() - t0)
            tokens.append(len(model.processor.tokenizer(pred.raw_text or "")["input_ids"]))
    flops = count_grounding_flops(preset, num_frames=num_frames)
    prefill_flops = flops["backbone_flops"] + flops["ours_flops"]
    mfu = prefill_flops / prefill_s / (peak_tflops * 1e12) if peak_tflops else None
    result = {
        "preset": preset, "device": device, "dtype": dtype, "num_frames": num_frames,
        "prefill_s": prefill_s, "per_query_s_median": statistics.median(per_query),
        "answer_tokens_per_s": sum(tokens) / sum(per_query) if sum(per_query) else None,
        "prefill_flops": prefill_flops, "prefill_mfu": mfu, "peak_tflops": peak_tflops,
        "targets": {"per_query_s": 0.5, "prefill_mfu": 0.40},
    }
    if device.startswith("cuda"):
        result["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 1024**3
        result["gpu"] = torch.cuda.get_device_name()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="spacevllm_7b")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--num-frames", type=int, default=64)
    parser.add_argument("--queries", type=int, default=8)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak of the card (H100/H200: 989)")
    parser.add_argument("--out", help="write the result JSON here")
    args = parser.parse_args()
    result = profile(args.preset, args.device, args.num_frames, args.queries, args.peak_tflops, args.dtype)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
