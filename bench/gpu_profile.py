"""Real-size profile on a GPU: the 7B-size model with random weights in bf16, 64 frames.

Measures prefill latency (encode the video prefix), per-query latency with the video cached,
tokens/s of the answer, peak memory and the prefill's model FLOPs utilisation (MFU) against the
card's peak. Targets (issue 8): per-query latency < 0.5 s with the video cached; prefill MFU >= 40%.
``--train lora|full`` adds one training step as the trainer runs it (fp32 master weights for the
trainable parts, bf16 autocast, gradient checkpointing as in the preset, frozen vision tower) and
its time and peak memory.

    python bench/gpu_profile.py --device cuda --preset spacevllm_7b --num-frames 64 --peak-tflops 989
    python bench/gpu_profile.py --device cuda --preset spacevllm_7b --num-frames 64 --train lora
    python bench/gpu_profile.py --device cpu --preset spacevllm_qwen25vl_7b --num-layers 2 --num-frames 4 \
        --dtype float32            # the same rows on a CPU, at real width and reduced depth
    python bench/gpu_profile.py --device cuda --preset prompted_qwen2_5_vl_7b --num-frames 64

Presets: the SpaceVLLM presets (``stvg_plugin.models.presets``) and the prompted real-size configs
``conf/model/prompted_<family>_7b.yaml`` (today ``prompted_qwen2_5_vl_7b``). A prompted preset is its
family's transformers model (``Qwen2_5_VLForConditionalGeneration``) at the backbone adapter's 7B
dimensions, random weights, with the byte tokenizer and image processor of the family's tiny builder,
wrapped in ``PromptedGrounder``: prefill = its encode-once video prefix pass (frames as separate
images at the config's ``max_pixels``), per query = a greedy answer extending the cached prefix.
Its vocabulary is cut to the byte tokenizer's (embedding and lm_head are lookups, as
``use_tokenizer_vocab`` does for SpaceVLLM tests): this saves ~4 GB in fp32 and drops the real
lm_head's 3584 x 152064 matmul (~1.1 GFLOP and ~1.1 GB of bf16 weights read per decoded token, a
few % of a 7B decode step), so its per-query latency is slightly optimistic. Its prefill FLOPs (for
the MFU) are counted with ``FlopCounterMode`` on the warm-up pass itself.

``--num-layers N`` keeps the first N LLM layers and N vision-tower layers (real widths, heads and
patch sizes): the same code path on a CPU or a small GPU. The Qwen2.5-VL preset is fed 640x360
frames (its smart resize keeps the aspect ratio); LLaVA-Video's are square (SigLIP's 384 px).
Random weights make the answers random text: the greedy loop then runs to ``max_new_tokens``, which
is the worst case for per-query latency. Nothing is downloaded; weights are random-initialised.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch


def build_random_model(preset: str, device: str, dtype: torch.dtype, num_layers: int | None = None):
    """The preset's architecture with random weights, materialised directly on ``device``."""
    from stvg_plugin.models.backbones import get_backbone
    from stvg_plugin.models.modeling_spacevllm import SpaceVLLMForGrounding
    from stvg_plugin.models.presets import build_config, build_tiny_model, resolve_spec
    from stvg_plugin.models.processing_spacevllm import SpaceVLLMProcessor
    from stvg_plugin.models.tokenizer import build_char_tokenizer

    spec = resolve_spec(preset)
    if spec.get("size") == "tiny":
        return build_tiny_model(preset).to(device=device).cast_for_compute(dtype).eval()
    if num_layers:
        spec["num_layers"] = num_layers
    config = build_config(spec)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # allocate in bf16 directly: no fp32 copy of 8B parameters
    try:
        with torch.device(device):
            model = SpaceVLLMForGrounding(config)
    finally:
        torch.set_default_dtype(previous)
    model.space_decoder.float()  # as loaded checkpoints keep it (_keep_in_fp32_modules_strict)
    tokenizer = build_char_tokenizer()
    model.processor = SpaceVLLMProcessor(tokenizer, get_backbone(spec["backbone"]).frame_processor_for(model.config),
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


def _median_seconds(fn, device: str, repeats: int = 3):
    """``(median wall time of fn() over repeats calls, device synchronised; the last result)``."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def frame_shape(model) -> tuple[int, int]:
    """Synthetic frame (height, width): the preset's fixed size, else a 16:9 640x360 video."""
    return tuple(model.config.frame_size) if model.config.frame_size else (360, 640)


def train_step(model, sample, mode: str, device: str) -> dict:
    """One training step as the trainer runs it: fp32 master weights for what trains, bf16 autocast."""
    from stvg_plugin.training.parts import apply_lora, set_trainable
    from stvg_plugin.training.run import enable_gradient_checkpointing
    from stvg_plugin.training.trainer import prepare_master_weights

    if mode == "lora":
        apply_lora(model, 16, 32, ["q_proj", "k_proj", "v_proj", "o_proj"])
    set_trainable(model, ["queries", "decoder", "projector", "llm"], lora=mode == "lora")
    enable_gradient_checkpointing(model)
    autocast = next(model.parameters()).dtype != torch.float32
    prepare_master_weights(model, "bf16" if autocast else "no")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    model.train()
    inputs = model.prepare_inputs(sample, "the person who walks to the door", "from 1.0 s to 2.0 s",
                                  span_frames=(0, int(sample.info.num_frames)),
                                  boxes={int(f): [10.0, 10.0, 100.0, 120.0] for f in sample.indices})
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=autocast):
        out = model(inputs)
    out.loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    _sync(device)
    row = {"train": mode, "train_step_s": time.perf_counter() - t0, "train_loss": float(out.loss.detach()),
           "trainable_params": sum(p.numel() for p in params)}
    if device.startswith("cuda"):
        row["train_peak_memory_gib"] = torch.cuda.max_memory_allocated() / 1024**3
    return row


def prompted_preset(preset: str) -> dict | None:
    """The ``conf/model/<preset>.yaml`` of a real-size prompted preset (``prompted_<family>_7b``), or None.

    The tiny prompted presets load saved checkpoints; this profile builds the 7B dimensions only."""
    import yaml

    from stvg_plugin.data import StvgError

    path = Path(__file__).resolve().parents[1] / "conf" / "model" / f"{preset}.yaml"
    if not preset.replace("_", "").isalnum() or not preset.endswith("_7b") or not path.is_file():
        return None
    cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(cfg, dict) or cfg.get("type") != "prompted":
        return None
    if not cfg.get("family"):
        raise StvgError(f"{path}: a prompted preset for the profile must name its 'family'")
    return cfg


def build_prompted_grounder(cfg: dict, device: str, dtype: torch.dtype, num_layers: int | None = None,
                            max_new_tokens: int | None = None):
    """A prompted preset's family model at the 7B dimensions, random weights, in ``PromptedGrounder``."""
    from transformers import Qwen2VLImageProcessorPil

    from stvg_plugin.data import StvgError
    from stvg_plugin.models.backbones import BACKBONES
    from stvg_plugin.models.families import get_family
    from stvg_plugin.models.families._tiny import byte_tokenizer, chatml_template, vocab_size
    from stvg_plugin.models.families.qwen2_5_vl import QWEN_IMAGE, QWEN_SPECIALS, QWEN_SYSTEM
    from stvg_plugin.models.presets import reduce_depth
    from stvg_plugin.models.prompted import PromptedGrounder

    family = get_family(str(cfg["family"]))
    if family.name != "qwen2_5_vl" or family.name not in BACKBONES:
        raise StvgError(f"prompted family {family.name!r}: no 7B dimensions to profile (only qwen2_5_vl has them)")
    config = BACKBONES[family.name].large_config()  # the Qwen2.5-VL-7B-Instruct dimensions
    if num_layers:
        reduce_depth(config, num_layers)
    tok = byte_tokenizer(QWEN_SPECIALS, chat_template=chatml_template(QWEN_IMAGE, QWEN_SYSTEM))
    ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}
    text = config.get_text_config()
    text.vocab_size = vocab_size(tok)
    text.eos_token_id, text.pad_token_id, text.bos_token_id = ids["<|im_end|>"], ids["<|endoftext|>"], None
    config.image_token_id, config.video_token_id = ids["<|image_pad|>"], ids["<|video_pad|>"]
    config.vision_start_token_id, config.vision_end_token_id = ids["<|vision_start|>"], ids["<|vision_end|>"]
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # allocate in the compute dtype directly, as build_random_model
    try:
        with torch.device(device):
            model = family.model_cls()(config)
    finally:
        torch.set_default_dtype(previous)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    kwargs = {"max_new_tokens": int(max_new_tokens or cfg.get("max_new_tokens") or 256)}
    return PromptedGrounder(model.eval(), tok, Qwen2VLImageProcessorPil(), family=family,
                            max_pixels=cfg.get("max_pixels"), num_workers=0, **kwargs)


def profile_prompted(preset: str, cfg: dict, device: str, num_frames: int, queries: int, peak_tflops: float,
                     dtype: str, num_layers: int | None = None, max_new_tokens: int | None = None) -> dict:
    """The same rows as :func:`profile` for a prompted preset (encode-once prefix, cached per-query answers)."""
    from torch.utils.flop_counter import FlopCounterMode

    grounder = build_prompted_grounder(cfg, device, getattr(torch, dtype), num_layers, max_new_tokens)
    generated: list[int] = []  # answer lengths in model tokens (re-tokenizing random byte text would miscount)
    generate = grounder.model.generate

    def counting_generate(**kwargs):
        output = generate(**kwargs)
        generated.append(int(output.shape[1] - kwargs["input_ids"].shape[1]))
        return output

    grounder.model.generate = counting_generate
    h, w = 360, 640  # a 16:9 video; the family's smart resize keeps the aspect under max_pixels
    sample = synthetic_sample(num_frames, h, w)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        with FlopCounterMode(display=False) as counter:  # the warm-up pass, counted
            grounder.encode_video(sample)
        prefill_flops = int(counter.get_total_flops())
        _sync(device)
        prefill_s, prefix = _median_seconds(lambda: grounder.encode_video(sample), device)
        per_query = []
        for i in range(queries):
            suffix = grounder.style.suffix(f"the person number {i} who walks to the door", sample.info.duration_s,
                                           "stvg")
            t0 = time.perf_counter()
            grounder.generate_text(prefix, suffix)
            _sync(device)
            per_query.append(time.perf_counter() - t0)
    grid = prefix.inputs["image_grid_thw"]
    merge = grounder.model.config.vision_config.spatial_merge_size
    mfu = prefill_flops / prefill_s / (peak_tflops * 1e12) if peak_tflops else None
    result = {
        "preset": preset, "device": device, "dtype": dtype, "num_frames": num_frames,
        "num_layers": num_layers or "full", "frame_hw": [h, w], "processed_hw": list(prefix.processed_size or []),
        "max_pixels": cfg.get("max_pixels"), "prefix_tokens": int(prefix.input_ids.shape[1]),
        "visual_tokens_per_frame": int(grid[0].prod()) // merge**2,
        "prefill_s": prefill_s, "per_query_s_median": statistics.median(per_query),
        "answer_tokens_per_s": sum(generated) / sum(per_query) if sum(per_query) else None,
        "answer_tokens": generated, "max_new_tokens": grounder.max_new_tokens,
        "prefill_flops": prefill_flops, "prefill_mfu": mfu, "peak_tflops": peak_tflops,
        "targets": {"per_query_s": 0.5, "prefill_mfu": 0.40},
    }
    _memory_rows(result, device)
    return result


def _memory_rows(result: dict, device: str) -> None:
    if device.startswith("cuda"):
        result["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 1024**3
        result["gpu"] = torch.cuda.get_device_name()
    else:  # the process's peak resident memory (Linux: KiB)
        result["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def profile(preset: str, device: str, num_frames: int, queries: int, peak_tflops: float, dtype: str,
            num_layers: int | None = None, train: str = "none", max_new_tokens: int | None = None) -> dict:
    from stvg_plugin.models.flops import count_grounding_flops

    prompted = prompted_preset(preset)
    if prompted is not None:
        if train != "none":
            raise SystemExit(f"--train is for the SpaceVLLM presets; {preset} is a zero-shot prompted preset")
        return profile_prompted(preset, prompted, device, num_frames, queries, peak_tflops, dtype, num_layers,
                                max_new_tokens)
    torch_dtype = getattr(torch, dtype)
    from stvg_plugin.models.grounder import Grounder

    model = build_random_model(preset, device, torch_dtype, num_layers)
    grounder = Grounder(model)
    model.config.num_frames = num_frames
    if max_new_tokens:
        model.config.max_new_tokens = max_new_tokens
    h, w = frame_shape(model)
    sample = synthetic_sample(num_frames, h, w)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        model.encode_video(sample)  # warm-up (kernels, allocator)
        _sync(device)
        prefill_s, prefix = _median_seconds(lambda: model.encode_video(sample), device)
        per_query, tokens = [], []
        for i in range(queries):
            t0 = time.perf_counter()
            pred = grounder.ground_prefix(prefix, f"the person number {i} who walks to the door")
            _sync(device)
            per_query.append(time.perf_counter() - t0)
            tokens.append(len(model.processor.tokenizer(pred.raw_text or "")["input_ids"]))
    spec = {"preset": preset, **({"num_layers": num_layers} if num_layers else {})}
    flops = count_grounding_flops(spec, num_frames=num_frames)
    prefill_flops = flops["backbone_flops"] + flops["ours_flops"]
    mfu = prefill_flops / prefill_s / (peak_tflops * 1e12) if peak_tflops else None
    result = {
        "preset": preset, "device": device, "dtype": dtype, "num_frames": num_frames,
        "num_layers": num_layers or "full", "frame_hw": [h, w], "prefix_tokens": prefix.length,
        "visual_tokens_per_frame": int(prefix.visual_states.shape[1]),
        "prefill_s": prefill_s, "per_query_s_median": statistics.median(per_query),
        "answer_tokens_per_s": sum(tokens) / sum(per_query) if sum(per_query) else None,
        "prefill_flops": prefill_flops, "prefill_mfu": mfu, "peak_tflops": peak_tflops,
        "targets": {"per_query_s": 0.5, "prefill_mfu": 0.40},
    }
    _memory_rows(result, device)
    del prefix
    if train != "none":
        result.update(train_step(model, sample, train, device))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="spacevllm_7b")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--num-frames", type=int, default=64)
    parser.add_argument("--queries", type=int, default=8)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak of the card (H100/H200: 989)")
    parser.add_argument("--num-layers", type=int, default=None,
                        help="keep the first N LLM and N vision-tower layers (real width); default: full depth")
    parser.add_argument("--train", choices=["none", "lora", "full"], default="none",
                        help="also time one training step (LoRA on the LLM, or the full LLM) and its peak memory")
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help="answer length cap (default: the preset's; prompted presets without one: 256)")
    parser.add_argument("--out", help="write the result JSON here")
    args = parser.parse_args()
    result = profile(args.preset, args.device, args.num_frames, args.queries, args.peak_tflops, args.dtype,
                     args.num_layers, args.train, args.max_new_tokens)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
