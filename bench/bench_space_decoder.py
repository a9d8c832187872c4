"""The space decoder's two cross-attentions at the demo model's shapes: ours vs ``nn.MultiheadAttention``.

``CrossAttentionBlock.attend`` computes ``nn.MultiheadAttention``'s output with its parameters
(tests/test_model_core.py checks equality); this bench times forward + backward of each attention of the
demo's decoder (``spacevllm_tiny_learn``: 8 videos of 16 frames, 8x8 = 64 tokens a frame, width 64, 2
heads, a 14-token query text) in both forms, in turns:

* text -> visual tokens. Before: each frame's tokens attended to the text copied once per frame
  (``[B*T, P]`` queries over ``[B*T, L]`` keys). Now: one call per video over all its frames' tokens.
* visual tokens -> the frame's query token. Before: ``nn.MultiheadAttention`` projects the 64 tokens to
  keys and values per frame. Now: the query moves into the keys' space (``Lq * heads <= dim``).

    python bench/bench_space_decoder.py [--threads 1] [--rounds 30]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from stvg_plugin.models.space_decoder import CrossAttentionBlock


def _time(fn, *inputs: torch.Tensor) -> float:
    t0 = time.perf_counter()
    out = fn(*inputs)
    out.square().mean().backward()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--videos", type=int, default=8)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--text", type=int, default=14)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--heads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    b, t, p, length, dim = args.videos, args.frames, args.tokens, args.text, args.dim
    block = CrossAttentionBlock(dim, args.heads, mlp_ratio=2)
    visual = torch.randn(b * t, p, dim, requires_grad=True)
    text = torch.randn(b, length, dim, requires_grad=True)
    pad = torch.zeros(b, length, dtype=torch.bool)
    pad[:, length - 3 :] = True
    text_per_frame = text.detach()[:, None].expand(b, t, length, dim).reshape(b * t, length, dim).requires_grad_()
    pad_per_frame = pad[:, None].expand(b, t, length).reshape(b * t, length)
    query = torch.randn(b * t, 1, dim, requires_grad=True)
    contenders = {
        "text_attention": {
            "torch_per_frame": lambda: _time(lambda x, kv: block.attn(x, kv, kv, key_padding_mask=pad_per_frame,
                                                                        need_weights=False)[0], visual, text_per_frame),
            "ours_per_video": lambda: _time(lambda x, kv: block.attend(x, kv, pad),
                                            visual.reshape(b, t * p, dim), text),
        },
        "query_attention": {
            "torch": lambda: _time(lambda x, kv: block.attn(x, kv, kv, need_weights=False)[0], query, visual),
            "ours": lambda: _time(block.attend, query, visual),
        },
    }
    rows = []
    for name, pair in contenders.items():
        times: dict[str, list[float]] = {k: [] for k in pair}
        for r in range(args.rounds + 2):
            for k, fn in pair.items():
                elapsed = fn()
                if r >= 2:  # warm-up rounds
                    times[k].append(elapsed)
        (old, old_t), (new, new_t) = times.items()
        ratios = [a / c for a, c in zip(old_t, new_t)]
        row = {"name": f"space_decoder_{name}", "threads": args.threads, f"{old}_ms": round(statistics.median(old_t) * 1e3, 2),
               f"{new}_ms": round(statistics.median(new_t) * 1e3, 2), "ratio": round(statistics.median(ratios), 2)}
        print(f"{name} (forward + backward, {b} videos x {t} frames x {p} tokens, width {dim}): "
              f"{old} {row[f'{old}_ms']} ms, {new} {row[f'{new}_ms']} ms, {row['ratio']}x")
        rows.append(row)
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
