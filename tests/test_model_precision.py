"""Training precision and memory switches of the model core (issue 13): fp32 master weights under
bf16 autocast, fp32 boxes, gradient checkpointing, the bounded frame cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from stvg_plugin.data import read_queries
from stvg_plugin.models import SpaceVLLMForGrounding, load_grounder
from stvg_plugin.models.presets import build_tiny_model
from stvg_plugin.training import prepare
from stvg_plugin.training.run import enable_gradient_checkpointing

TINY = {"preset": "spacevllm_tiny", "span_source": "relevance"}
FAST = {"grad_accum": 1, "num_threads": 1, "warmup_steps": 0, "num_workers": 1, "device": "cpu", "lr": 1e-4,
        "max_steps": 50}
NORM = "backbone.vlm.model.language_model.norm.weight"  # an RMSNorm weight, initialised at exactly 1.0


@pytest.fixture
def fresh_accelerator_state():
    """accelerate keeps one process-wide state: a run with another mixed_precision needs it reset."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def _run(synth_dir: Path, out: Path, spec: dict, mixed: str, steps: int = 3):
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    t = prepare(spec, read_queries(synth_dir / "annotations.jsonl"), out, trainer={**FAST, "mixed_precision": mixed},
                train_parts=["queries", "decoder", "llm"], resume=None)
    m = t.unwrapped
    before = m.get_parameter(NORM).detach().float().clone()
    assert torch.equal(before, torch.ones_like(before))
    t.train(until=steps)
    return t, m.get_parameter(NORM).detach().float() - before


def test_bf16_training_keeps_fp32_master_weights_and_moves_unit_weights_like_fp32(
    synth_dir: Path, tmp_path: Path, fresh_accelerator_state: None
) -> None:
    # the 7B path: weights loaded in bf16 (dtype), trained under bf16 autocast
    t16, delta16 = _run(synth_dir, tmp_path / "bf16", {**TINY, "dtype": "bfloat16"}, "bf16")
    _, delta32 = _run(synth_dir, tmp_path / "fp32", TINY, "no")
    m = t16.unwrapped
    assert all(p.dtype == torch.float32 for p in m.parameters() if p.requires_grad), "trainable = fp32 master"
    frozen = [p for p in m.backbone.vlm.model.vision_tower.parameters()]
    assert frozen and all(p.dtype == torch.bfloat16 and not p.requires_grad for p in frozen), "frozen stay bf16"
    state = [s for s in t16.optimizer.state.values() if "exp_avg" in s]
    assert state and all(s["exp_avg"].dtype == torch.float32 and s["exp_avg_sq"].dtype == torch.float32 for s in state)
    # 3 AdamW steps at lr 1e-4 move each entry by up to 3e-4; a bf16 weight at 1.0 (neighbours 1 - 2^-8 and
    # 1 + 2^-7) either stays at 1.0 or jumps by >= 3.9e-3
    for delta in (delta32, delta16):
        assert (delta.abs() > 1e-5).float().mean() > 0.75, "the unit weights did not move"
        assert delta.abs().max() < 4e-4, "a move larger than 3 Adam steps: bf16 rounding"
    ratio = (delta16.abs().median() / delta32.abs().median()).item()
    assert 0.5 < ratio < 2.0, ratio
    # boxes and relevance logits come back fp32 under autocast
    ex = t16.data.examples(0, 1)[0]
    with t16.accelerator.autocast():
        out = t16.model(ex.inputs)
    assert out.pred_boxes.dtype == torch.float32 and out.relevance_logits.dtype == torch.float32
    # the saved model says what it holds: bf16 (space decoder fp32), and loads back
    final = t16.save_final()
    cfg = json.loads((final / "config.json").read_text())
    assert cfg["dtype"] == "bfloat16"
    loaded = SpaceVLLMForGrounding.from_pretrained(final)
    assert loaded.space_decoder.visual_proj.weight.dtype == torch.float32
    torch.testing.assert_close(loaded.get_parameter(NORM).float(), m.get_parameter(NORM).to(torch.bfloat16).float())


def test_decoder_stays_fp32_in_a_bf16_model() -> None:
    model = build_tiny_model("spacevllm_tiny").cast_for_compute(torch.bfloat16)
    assert model.backbone.vlm.model.language_model.norm.weight.dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in model.space_decoder.parameters())
    visual = torch.randn(1, 2, 16, model.config.hidden_size, dtype=torch.bfloat16)
    queries = torch.randn(1, 2, model.config.hidden_size, dtype=torch.bfloat16)
    text = torch.randn(1, 3, model.config.hidden_size, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.space_decoder(visual, queries, text)
    assert out.boxes.dtype == torch.float32 and out.relevance_logits.dtype == torch.float32


def _grads(model: SpaceVLLMForGrounding, inputs) -> tuple[dict[str, torch.Tensor], int]:
    """Gradients of a scalar of every output, and the elements autograd saved for the backward."""
    saved = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved[0] += t.numel()
        return t

    model.zero_grad()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(inputs)
    (out.pred_boxes.sum() + out.relevance_logits.sum() + out.loss_lm).backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}, saved[0]


def test_gradient_checkpointing_saves_less_and_gives_equal_gradients(synth_dir: Path) -> None:
    q = read_queries(synth_dir / "annotations.jsonl")[0]
    model = build_tiny_model("spacevllm_tiny").train()
    sampled = load_grounder("spacevllm_tiny").sample(q.video)
    inputs = model.prepare_inputs(sampled, q.query, "from 1.0 s to 2.0 s")
    plain, saved_plain = _grads(model, inputs)
    enable_gradient_checkpointing(model)
    assert model.backbone.vlm.model.language_model.layers[0].gradient_checkpointing
    assert any(type(m).__name__ == "SiglipEncoderLayer" and m.gradient_checkpointing for m in model.modules())
    ckpt, saved_ckpt = _grads(model, inputs)
    # the layers keep only their inputs; their interiors are recomputed in the backward
    assert saved_ckpt < 0.5 * saved_plain, (saved_ckpt, saved_plain)
    assert plain.keys() == ckpt.keys() and len(plain) > 10
    for name in plain:  # same ops in the same order on the same inputs: equal up to fp32 rounding
        torch.testing.assert_close(ckpt[name], plain[name], rtol=1e-5, atol=1e-6, msg=name)


def test_frame_cache_is_bounded_in_bytes(synth_dir: Path) -> None:
    from stvg_plugin.training.dataset import FrameStore

    videos = sorted({q.video for q in read_queries(synth_dir / "annotations.jsonl")})
    one = FrameStore(4, (32, 32)).sample(videos[0]).frames.nbytes
    store = FrameStore(4, (32, 32), max_bytes=2 * one)
    for v in videos[:4]:
        assert store.get(v) is not None
    assert len(store._frames) == 2 and store.cached_bytes == 2 * one


@pytest.mark.parametrize("preset", ["spacevllm_7b", "spacevllm_qwen25vl_7b"])
def test_real_presets_default_to_the_memory_plan(preset: str) -> None:
    from stvg_plugin.models.presets import resolve_spec

    spec = resolve_spec(preset)
    assert spec["gradient_checkpointing"] is True and spec["cache_frames"] is False
    assert "vision_tower" not in spec["train_parts"] and "llm" in spec["train_parts"]


def test_saving_gathers_the_state_dict_through_the_accelerator(synth_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """Under FSDP / ZeRO-3 each process holds a shard: the saved folder must come from
    ``accelerator.get_state_dict`` (a collective every process enters), not from the local module."""
    t = prepare(TINY, read_queries(synth_dir / "annotations.jsonl"), tmp_path, trainer={**FAST, "mixed_precision": "no"},
                resume=None)
    calls = []
    original = t.accelerator.get_state_dict

    def gathered(model, *args, **kwargs):
        calls.append(model)
        state = original(model, *args, **kwargs)
        return {k: (v + 1.0 if k == "st_query_embed.weight" else v) for k, v in state.items()}  # mark its output

    monkeypatch.setattr(t.accelerator, "get_state_dict", gathered)
    final = t.save_final()
    assert calls == [t.model]
    loaded = SpaceVLLMForGrounding.from_pretrained(final)
    torch.testing.assert_close(loaded.st_query_embed.weight, t.unwrapped.st_query_embed.weight + 1.0)
