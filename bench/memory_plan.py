"""Memory plan of the 7B presets on one GPU: inference, LoRA and full-LLM training at 16 / 32 / 64 frames,
with and without gradient checkpointing (BENCHMARKS.md "Memory plan").

How each column is obtained (printed with the table):

* **weights, gradients, optimizer state: analytic** from the parameter counts of the model built on
  the meta device: bf16 weights (2 B) where frozen; under training, fp32 master weights (4 B) + fp32
  gradients (4 B) + AdamW's two fp32 moments (8 B) for what trains (the trainer's mixed precision).
  LoRA: r = 16 on q/k/v/o of every LLM layer.
* **activations saved for the backward: measured at real width and reduced depth, extrapolated per
  layer**: the model is built at the preset's real widths, heads and patch sizes with 1 and 2 LLM
  layers, a training forward runs under bf16 autocast on ``--frames`` frames, and every tensor autograd
  saves is counted (``saved_tensors_hooks``, each storage once). The 2-layer minus 1-layer difference
  is one LLM layer; per token it is scaled to the full depth (28) and to the prefix length at 16 / 32
  / 64 frames. With gradient checkpointing a layer keeps only its input, plus one layer's activations
  alive while it is recomputed. The vision tower is frozen (the real presets' default), so it saves
  nothing; it runs without a graph.
* **inference**: bf16 weights + the prefix KV cache (analytic: 2 x layers x kv heads x head dim x
  tokens x 2 B) + the largest transient of a layer at prefill (the MLP's gate/up/activation,
  analytic: 3 x tokens x intermediate x 2 B).

Not counted: the CUDA context and allocator fragmentation (add ~2-4 GB), the video frames on the host.

    python bench/memory_plan.py --frames 2        # 8 measurements, one process each, <= ~4 GB of RAM
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from typing import Any

import numpy as np
import torch

GIB = 1024**3
FRAME_COUNTS = (16, 32, 64)
TEXT_TOKENS_PER_FRAME = 12  # "Frame 12 at 34.56 s:" + newline in the Qwen2 tokenizer (flops.py uses the same)
INSTRUCTION_TOKENS = 60  # system prompt + instruction + a short answer
LORA_RANK = 16


def _build(preset: str, num_layers: int) -> Any:
    from stvg_plugin.models.backbones import get_backbone
    from stvg_plugin.models.modeling_spacevllm import SpaceVLLMForGrounding
    from stvg_plugin.models.presets import build_config, resolve_spec, use_tokenizer_vocab
    from stvg_plugin.models.processing_spacevllm import SpaceVLLMProcessor
    from stvg_plugin.models.tokenizer import build_char_tokenizer

    spec = {**resolve_spec(preset), "num_layers": num_layers}
    config = build_config(spec)
    tok = build_char_tokenizer()
    # the embedding table / lm_head cut to the tokenizer (a lookup: activations per token do not change;
    # only the answer's logits, a few tokens x vocabulary, are smaller): -2 GB per model
    use_tokenizer_vocab(config.vlm_config, tok)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        model = SpaceVLLMForGrounding(config)
    finally:
        torch.set_default_dtype(previous)
    model.space_decoder.float()
    model.processor = SpaceVLLMProcessor(tok, get_backbone(spec["backbone"]).frame_processor_for(config), config)
    return model


def _sample(model: Any, frames: int) -> Any:
    from bench.gpu_profile import frame_shape, synthetic_sample

    h, w = frame_shape(model)
    return synthetic_sample(frames, h, w)


def saved_activation_bytes(preset: str, num_layers: int, frames: int, checkpointing: bool) -> tuple[int, int]:
    """(bytes autograd saves in one training forward, tokens) at real width, ``num_layers`` deep.

    Each measurement runs in a fresh process: a real-width model is ~2-3 GB and the allocator does not
    hand freed memory back, so building several in one process grew to 20 GB of RSS.
    """
    import subprocess

    cmd = [sys.executable, __file__, "--measure-one", preset, str(num_layers), str(frames), str(int(checkpointing))]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("MEASURED ")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"measurement {cmd[3:]} failed: {out.stderr[-2000:]}")
    saved, tokens = lines[-1].split()[1:]
    return int(saved), int(tokens)


def _measure_one(preset: str, num_layers: int, frames: int, checkpointing: bool) -> tuple[int, int]:
    from stvg_plugin.training.parts import set_trainable
    from stvg_plugin.training.run import enable_gradient_checkpointing

    torch.manual_seed(0)
    model = _build(preset, num_layers)
    set_trainable(model, ["queries", "decoder", "projector", "llm"])
    if checkpointing:
        enable_gradient_checkpointing(model)
    model.train()
    sample = _sample(model, frames)
    inputs = model.prepare_inputs(sample, "the person who walks to the door", "from 1.0 s to 2.0 s")
    with torch.no_grad():
        prefix_len = int(model._prefix_embeddings(inputs.pixel_inputs, inputs.timestamps)[0].shape[1])
    tokens = prefix_len + int(inputs.instruction.input_ids.shape[0]) + int(inputs.answer_ids.shape[0])
    seen: dict[tuple, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.device.type != "meta" and not isinstance(t, torch.nn.Parameter):
            storage = t.untyped_storage()
            seen[(storage.data_ptr(), storage.nbytes())] = storage.nbytes()
        return t

    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(inputs)
    total = sum(n for (ptr, _), n in seen.items() if ptr not in params)
    del model, out, inputs
    gc.collect()
    return total, tokens


def parameter_counts(preset: str) -> dict[str, int]:
    from stvg_plugin.models.presets import build_meta_model

    m = build_meta_model(preset)
    vlm = m.backbone.vlm
    llm = sum(p.numel() for p in vlm.model.language_model.parameters()) + sum(p.numel() for p in vlm.lm_head.parameters())
    vision = sum(p.numel() for n, p in vlm.model.named_parameters() if n.startswith(("vision_tower", "visual")))
    total = sum(p.numel() for p in m.parameters())
    text = vlm.config.get_text_config()
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    proj = sum(p.numel() for n, p in vlm.model.named_parameters() if "multi_modal_projector" in n or "merger" in n
               or n == "image_newline")
    ours = sum(p.numel() for n, p in m.named_parameters() if n.startswith(("st_query_embed", "space_decoder")))
    lora = text.num_hidden_layers * LORA_RANK * (
        2 * text.hidden_size + text.hidden_size + head_dim * text.num_key_value_heads * 2 + text.hidden_size * 2
    )  # q (d->d), k/v (d->kv), o (d->d): r x (in + out) each
    return {"total": total, "llm": llm, "vision": vision, "projector": proj, "ours": ours, "lora": lora,
            "layers": text.num_hidden_layers, "kv_heads": text.num_key_value_heads, "head_dim": head_dim,
            "intermediate": text.intermediate_size, "hidden": text.hidden_size}


def tokens_per_frame(preset: str) -> int:
    from stvg_plugin.models.presets import build_config, resolve_spec

    cfg = build_config(resolve_spec(preset))
    if cfg.backbone == "qwen2_5_vl":
        return int(cfg.max_pixels) // (28 * 28)  # smart resize at the pixel budget, 2x2 merge of 14-px patches
    g = cfg.vlm_config.vision_config.image_size // cfg.vlm_config.vision_config.patch_size
    if cfg.video_pool_mode == "average":  # lmms-lab LLaVA-Video: floor(g / 2)^2 (+ a newline per row)
        side = g // 2
        return side * side + (side if cfg.video_newline == "row" else 0)
    return (-(-g // 2)) ** 2  # transformers' LLaVA-OneVision bilinear pooling to ceil(g / 2)^2


def plan(preset: str, frames_measured: int, measured: dict | None = None) -> dict[str, Any]:
    """``measured``: a previous run's ``measured`` entry (``--measured``) instead of measuring again."""
    counts = parameter_counts(preset)
    if measured is not None:
        measured = {k == "True" if isinstance(k, str) else k: v for k, v in measured.items()}
    else:
        measured = {}
        for ckpt in (False, True):
            one, tok = saved_activation_bytes(preset, 1, frames_measured, ckpt)
            two, _ = saved_activation_bytes(preset, 2, frames_measured, ckpt)
            measured[ckpt] = {"per_layer_per_token": (two - one) / tok, "rest_per_token": (one - (two - one)) / tok,
                              "tokens": tok, "one_layer": one, "two_layers": two}
    # one layer's full activations are alive while it is recomputed under checkpointing
    per_layer_full = measured[False]["per_layer_per_token"]
    rows = []
    p = counts
    for frames in FRAME_COUNTS:
        tokens = frames * (tokens_per_frame(preset) + 1 + TEXT_TOKENS_PER_FRAME) + INSTRUCTION_TOKENS
        kv = 2 * p["layers"] * p["kv_heads"] * p["head_dim"] * tokens * 2
        transient = 3 * tokens * p["intermediate"] * 2
        inference = p["total"] * 2 + kv + transient
        ours = p["ours"] + p["projector"]
        lora_static = (p["total"] - ours) * 2 + (ours + p["lora"]) * 16
        full_static = (p["total"] - ours - p["llm"]) * 2 + (ours + p["llm"]) * 16
        row = {"frames": frames, "tokens": tokens, "inference": inference / GIB}
        for ckpt in (False, True):
            m = measured[ckpt]
            act = tokens * (m["per_layer_per_token"] * p["layers"] + m["rest_per_token"])
            if ckpt:
                act += tokens * per_layer_full
            tag = "gc" if ckpt else "no_gc"
            row[f"lora_{tag}"] = (lora_static + act) / GIB
            row[f"full_{tag}"] = (full_static + act) / GIB
            row[f"activations_{tag}"] = act / GIB
        rows.append(row)
    return {"preset": preset, "parameters": counts, "measured": {str(k): v for k, v in measured.items()}, "rows": rows}


def table(result: dict[str, Any]) -> str:
    lines = [f"**{result['preset']}** (tokens per frame {tokens_per_frame(result['preset'])}; GiB)", "",
             "| frames | prefix tokens | inference | LoRA | LoRA + GC | full LLM | full LLM + GC |",
             "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['frames']} | {r['tokens']:,} | {r['inference']:.1f} | {r['lora_no_gc']:.1f} | "
                     f"{r['lora_gc']:.1f} | {r['full_no_gc']:.1f} | {r['full_gc']:.1f} |")
    return "\n".join(lines)


def main() -> int:
    if len(sys.argv) == 6 and sys.argv[1] == "--measure-one":
        saved, tokens = _measure_one(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), bool(int(sys.argv[5])))
        print(f"MEASURED {saved} {tokens}")
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["spacevllm_7b", "spacevllm_qwen25vl_7b"])
    parser.add_argument("--frames", type=int, default=4, help="frames of the measured forward")
    parser.add_argument("--measured", help="a previous --out JSON: reuse its measurements, recompute the table")
    parser.add_argument("--out", help="write the JSON here")
    args = parser.parse_args()
    np.set_printoptions(precision=3)
    previous = {}
    if args.measured:
        with open(args.measured, encoding="utf-8") as fh:
            previous = {r["preset"]: r["measured"] for r in json.load(fh)}
    results = [plan(p, args.frames, previous.get(p)) for p in args.presets]
    for r in results:
        m = r["measured"]
        print(f"{r['preset']}: saved activations per LLM layer per token: {m['False']['per_layer_per_token']:.0f} B "
              f"without, {m['True']['per_layer_per_token']:.0f} B with gradient checkpointing "
              f"(measured on {m['False']['tokens']} tokens)")
        print(table(r))
        print()
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
