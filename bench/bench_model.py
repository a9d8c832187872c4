"""Model cost at the 7B configuration: FLOPs share of our additions, and memory per frame budget.

Rows (no weights needed: the real modules run on the meta device):

* ``flops_share_7b_<N>f``: FLOPs of the spatio-temporal query tokens + space decoder over the
  LLaVA-Video-7B backbone forward (vision tower + projector + LLM prefill), ``N`` in 16/32/64.
  ``ratio`` is the share; target <= 0.05.
* ``memory_7b_<N>f``: an estimate of peak inference memory in bf16 = weights + the prefix KV cache
  + the largest transient of the prefill (the LLM's MLP activation over the whole prefix; attention
  runs through SDPA, so no ``seq x seq`` matrix). ``ratio`` is GiB; no target: it is the figure a
  user needs to pick a frame budget for a card. Measured peaks come from ``bench/gpu_profile.py``
  when a GPU is available.
"""

from __future__ import annotations

import argparse
import sys

BYTES_BF16 = 2
GIB = 1024**3


def _kv_bytes_per_token(text_cfg) -> int:
    heads = getattr(text_cfg, "num_key_value_heads", None) or text_cfg.num_attention_heads
    head_dim = getattr(text_cfg, "head_dim", None) or text_cfg.hidden_size // text_cfg.num_attention_heads
    return 2 * text_cfg.num_hidden_layers * heads * head_dim * BYTES_BF16


def memory_estimate(preset: str, num_frames: int, flops_row: dict) -> dict:
    """Weights + KV cache + the largest prefill activation, in bytes (bf16)."""
    from stvg_plugin.models.presets import build_meta_model

    model = build_meta_model(preset)
    params = sum(p.numel() for p in model.parameters())
    text_cfg = model.backbone.vlm.config.get_text_config()
    seq = num_frames * (flops_row["visual_tokens_per_frame"] + 12 + 1) + 40
    kv = _kv_bytes_per_token(text_cfg) * seq
    mlp = 3 * seq * text_cfg.intermediate_size * BYTES_BF16  # gate, up and their product live together
    total = params * BYTES_BF16 + kv + mlp
    return {"params": params, "prefix_tokens": seq, "weights_gib": params * BYTES_BF16 / GIB,
            "kv_cache_gib": kv / GIB, "prefill_activation_gib": mlp / GIB, "total_gib": total / GIB}


def run(quick: bool = False, preset: str = "spacevllm_7b") -> list[dict]:
    from stvg_plugin.models.flops import count_grounding_flops

    rows = []
    budgets = (16,) if quick else (16, 32, 64)
    for n in budgets:
        f = count_grounding_flops(preset, num_frames=n)
        rows.append({
            "name": f"flops_share_7b_{n}f", "ratio": f["share"], "target": 0.05, "met": f["share"] <= 0.05,
            "details": (f"backbone {f['backbone_flops']:.3g} FLOPs (vision {f['vision_flops']:.3g}, LLM "
                        f"{f['llm_flops']:.3g}); queries {f['query_token_flops']:.3g} + decoder "
                        f"{f['decoder_flops']:.3g}"),
        })
        m = memory_estimate(preset, n, f)
        rows.append({
            "name": f"memory_7b_{n}f_GiB_estimate", "ratio": m["total_gib"], "target": None, "met": True,
            "details": (f"weights {m['weights_gib']:.1f} GiB + KV {m['kv_cache_gib']:.2f} GiB "
                        f"({m['prefix_tokens']} prefix tokens) + prefill MLP {m['prefill_activation_gib']:.2f} GiB"),
        })
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    for r in run(quick=args.quick):
        print(f"{r['name']:<34} {r['ratio']:>10.4f}  target {r['target']}  {'ok' if r['met'] else 'MISSED'}")
        print(f"    {r['details']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
