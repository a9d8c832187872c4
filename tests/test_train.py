"""The trainer on real synthetic MP4s: exact resume, NaN stop, bad data, frozen parts, LoRA, the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from close import assert_tensors_close, isclose

from stvg_plugin.cli import main
from stvg_plugin.data import GroundingQuery, read_queries
from stvg_plugin.models import SpaceVLLMForGrounding, load_grounder
from stvg_plugin.training import NonFiniteLossError, fit, prepare
from stvg_plugin.training.checkpoints import list_checkpoints
from stvg_plugin.training.dataset import expand_tasks

TINY = {"preset": "spacevllm_tiny", "span_source": "relevance"}
FAST = {"lr": 1e-3, "grad_accum": 2, "num_threads": 1, "warmup_steps": 1, "num_workers": 1, "device": "cpu"}


def _queries(synth_dir: Path) -> list[GroundingQuery]:
    return read_queries(synth_dir / "annotations.jsonl")


def _log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_resume_continues_with_identical_losses(synth_dir: Path, tmp_path: Path) -> None:
    qs = _queries(synth_dir)
    mix = {"task_weights": {"stvg": 1.0, "tvg": 0.5, "rec": 0.5}, "derive_tasks": ["tvg", "rec"]}
    straight = fit(TINY, qs, tmp_path / "a", trainer={**FAST, "max_steps": 6}, resume=None, **mix)
    assert straight["step"] == 6
    t = prepare(TINY, qs, tmp_path / "b", trainer={**FAST, "max_steps": 6, "save_every": 3}, resume=None, **mix)
    t.train(until=3)
    assert [p.name for p in list_checkpoints(tmp_path / "b")] == ["step_0000003"]
    t2 = prepare(TINY, qs, tmp_path / "b", trainer={**FAST, "max_steps": 6, "save_every": 3}, resume="auto", **mix)
    assert t2.step == 3
    t2.train()
    t2.save_final()
    a, b = _log(tmp_path / "a"), _log(tmp_path / "b")
    assert [r["step"] for r in b] == [1, 2, 3, 4, 5, 6]
    keys = ("loss", "loss_lm", "loss_l1", "loss_giou", "loss_relevance", "lr")
    # exact, not within rounding: both runs are in this process on the same kernels, so a resume that
    # restores weights, optimizer, schedule and data order exactly repeats every rounding too
    assert [[r[k] for k in keys] for r in a] == [[r[k] for k in keys] for r in b]
    wa = SpaceVLLMForGrounding.from_pretrained(tmp_path / "a" / "final").state_dict()
    wb = SpaceVLLMForGrounding.from_pretrained(tmp_path / "b" / "final").state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.numerics
def test_fused_adamw_is_the_default_and_takes_the_loops_steps(synth_dir: Path, tmp_path: Path) -> None:
    """The trainer steps with torch's fused AdamW unless ``trainer.fused_optimizer=false`` (torch's loop over
    the parameters), and both take the same steps: the logged losses and gradient norms of three steps agree
    to float rounding. (Weights are not compared element by element: Adam's first update is ~lr * sign(g),
    so an element whose gradient is rounding noise around 0 may move either way.)"""
    qs = _queries(synth_dir)
    runs = {}
    for name, setting in {"fused": {}, "loop": {"fused_optimizer": False}}.items():
        t = prepare(TINY, qs, tmp_path / name, trainer={**FAST, "max_steps": 3, **setting}, resume=None)
        assert t.optimizer.optimizer.defaults["fused"] is (name == "fused")  # accelerate wraps torch's optimizer
        runs[name] = [t.train_step() for _ in range(3)]
    for ra, rb in zip(runs["loop"], runs["fused"]):
        for key in ("loss", "loss_l1", "loss_giou", "loss_relevance", "grad_norm"):
            assert_tensors_close(torch.tensor(rb[key]), torch.tensor(ra[key]), f"step {ra['step']} {key}", scale=1.0)
    assert runs["fused"][2]["loss"] != runs["fused"][0]["loss"]  # the steps changed the model


def test_training_bar_writes_a_few_records_to_a_log(synth_dir: Path, tmp_path: Path, capsys) -> None:
    """Written to a file (here pytest's captured stderr), the training bar draws at its rate limit, not at
    every step, and its last record carries the losses. (Before: one record per step, 32 for 30 steps.)"""
    import time

    from stvg_plugin.util.progress import FILE_MIN_SECONDS

    t0 = time.monotonic()
    fit(TINY, _queries(synth_dir), tmp_path / "run", trainer={**FAST, "grad_accum": 1, "max_steps": 30}, resume=None)
    elapsed = time.monotonic() - t0
    records = [r for r in capsys.readouterr().err.split("\r") if r.startswith("training")]
    assert records and "30/30" in records[-1] and "loss=" in records[-1], records[-3:]
    # the opening and closing records, and one per FILE_MIN_SECONDS the run took (a slow machine takes more)
    assert len(records) <= 3 + elapsed / FILE_MIN_SECONDS, (len(records), elapsed)


def test_fused_adamw_only_where_torch_has_the_kernel() -> None:
    """DeepSpeed brings its own optimizer step; parameters off CPU/CUDA (here: meta) have no fused kernel."""
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    from stvg_plugin.training.trainer import can_fuse_adamw

    def acc(kind: DistributedType, device: str = "cpu") -> SimpleNamespace:
        return SimpleNamespace(distributed_type=kind, device=torch.device(device))

    cpu = [torch.nn.Parameter(torch.zeros(3))]
    assert can_fuse_adamw(cpu, acc(DistributedType.NO))
    assert not can_fuse_adamw(cpu, acc(DistributedType.DEEPSPEED))
    assert not can_fuse_adamw([torch.nn.Parameter(torch.zeros(3, device="meta"))], acc(DistributedType.NO))
    assert not can_fuse_adamw(cpu, acc(DistributedType.NO, "meta"))


def test_centre_loss_and_temporal_mixer_train_and_reload(synth_dir: Path, tmp_path: Path) -> None:
    """The opt-in centre cross-entropy is logged and trained on; the space-time mixer leaves its zero
    init, and the checkpoint reloads with it."""
    qs = _queries(synth_dir)
    model = {**TINY, "decoder_temporal": True}
    trainer = {**FAST, "max_steps": 4, "loss_weights": {"centre": 1.0}}
    fit(model, qs, tmp_path / "c", trainer=trainer, resume=None)
    log = _log(tmp_path / "c")
    assert all(r["loss_centre"] > 0 for r in log)
    w = {"lm": 1.0, "l1": 5.0, "giou": 2.0, "relevance": 1.0, "centre": 1.0}
    for r in log:  # the centre term is part of the optimised total
        assert isclose(r["loss"], math.fsum(w[k] * r[f"loss_{k}"] for k in w))  # a float32 sum of 5 terms
    loaded = SpaceVLLMForGrounding.from_pretrained(tmp_path / "c" / "final")
    assert loaded.config.decoder_temporal and loaded.space_decoder.temporal is not None
    assert loaded.space_decoder.temporal.mix.weight.abs().sum() > 0
    pred = load_grounder(model, checkpoint=tmp_path / "c" / "final").ground(qs[0].video, [qs[0].query])[0]
    assert pred.error is None and pred.boxes


def test_nan_loss_stops_naming_the_step_and_keeps_last_checkpoint(synth_dir: Path, tmp_path: Path) -> None:
    t = prepare(TINY, _queries(synth_dir), tmp_path, trainer={**FAST, "max_steps": 5, "save_every": 2}, resume=None)
    t.train(until=2)
    with torch.no_grad():  # a real NaN flowing through the real forward pass
        t.unwrapped.space_decoder.box_head[0].weight.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match=r"at step 3.*step_0000002"):
        t.train()
    assert t.step == 2
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_0000002"]
    assert not list((tmp_path / "checkpoints").glob(".tmp*")) and not (tmp_path / "final").exists()
    good = SpaceVLLMForGrounding.from_pretrained(tmp_path / "checkpoints" / "step_0000002" / "model")
    assert all(torch.isfinite(p).all() for p in good.parameters())
    resumed = prepare(TINY, _queries(synth_dir), tmp_path, trainer={**FAST, "max_steps": 5, "save_every": 2})
    assert resumed.step == 2 and all(torch.isfinite(p).all() for p in resumed.unwrapped.parameters())


def test_undecodable_videos_are_skipped_and_counted(synth_dir: Path, bad_videos: dict, tmp_path: Path) -> None:
    good = _queries(synth_dir)
    bad = [
        GroundingQuery(qid=f"bad_{name}", video=str(path), query="the red circle", fps=10.0, num_frames=40,
                       width=160, height=120, span_frames=(5, 20), boxes={f: [10.0, 10.0, 50.0, 50.0] for f in range(5, 20)})
        for name, path in bad_videos.items() if name != "single_frame"
    ]
    t = prepare(TINY, good + bad, tmp_path, trainer={**FAST, "max_steps": 2}, resume=None)
    stats = t.data.stats
    assert set(stats.skipped_videos) == {q.video for q in bad}
    assert all(stats.skipped_videos[q.video] for q in bad), "each skip names its reason"
    assert stats.skipped_samples["undecodable_video"] == len(bad)
    assert all(not s.query.qid.startswith("bad_") for s in t.data.samples)
    assert t.train()["step"] == 2
    # streaming mode meets the bad videos during training instead, and skips them the same way
    t2 = prepare(TINY, bad + good[:2], tmp_path / "stream", trainer={**FAST, "max_steps": 3, "cache_frames": False},
                 resume=None)
    assert t2.train()["step"] == 3
    assert t2.data.stats.skipped_samples["undecodable_video"] > 0
    assert set(t2.data.stats.skipped_videos) <= {q.video for q in bad}


def test_span_outside_the_video_is_clipped_and_counted(synth_dir: Path, tmp_path: Path) -> None:
    q = _queries(synth_dir)[0]
    long = GroundingQuery(**{**q.__dict__, "qid": "overlong", "span_frames": (q.span_frames[0], q.num_frames + 50)})
    outside = GroundingQuery(**{**q.__dict__, "qid": "outside", "span_frames": (q.num_frames + 10, q.num_frames + 20)})
    t = prepare(TINY, [long, outside], tmp_path, trainer={**FAST, "max_steps": 2}, resume=None)
    t.train()
    assert t.data.stats.clipped_spans == 4  # 2 steps x 2 examples, all from the one usable query
    assert t.data.stats.skipped_samples["span_outside_video"] > 0


def test_derived_tasks_have_the_right_targets(synth_dir: Path, tmp_path: Path) -> None:
    qs = _queries(synth_dir)
    samples = expand_tasks(qs, ["tvg", "rec"])
    assert sorted({s.task for s in samples}) == ["rec", "stvg", "tvg"] and len(samples) == 3 * len(qs)
    t = prepare(TINY, qs, tmp_path, trainer={**FAST, "max_steps": 1}, task_weights={"stvg": 1, "tvg": 1, "rec": 1},
                derive_tasks=["tvg", "rec"], resume=None)
    seen = {}
    for step in range(30):
        for ex in t.data.examples(step, 2):
            seen.setdefault(ex.task, ex)
    assert set(seen) == {"stvg", "tvg", "rec"}
    proc = t.unwrapped.processor
    rec, tvg, stvg = seen["rec"], seen["tvg"], seen["stvg"]
    assert rec.inputs.answer_ids is None and rec.box_mask.tolist() == [True] and rec.relevance_target.tolist() == [1.0]
    assert len(rec.inputs.timestamps) == 1
    assert not tvg.box_mask.any() and tvg.relevance_target.sum() > 0
    assert stvg.box_mask.any() and torch.equal(stvg.box_mask.float(), stvg.relevance_target)
    answer = proc.decode(stvg.inputs.answer_ids[:-1].tolist())
    assert proc.parse_span(answer) is not None and answer.startswith("from ")


def test_coverage_relevance_target_is_the_covered_fraction_of_each_frame_segment(synth_dir: Path,
                                                                               tmp_path: Path) -> None:
    from stvg_plugin.models.decoding import frame_segments

    qs = _queries(synth_dir)
    t = prepare({**TINY, "relevance_target": "coverage"}, qs, tmp_path, trainer={**FAST, "max_steps": 1},
                task_weights={"stvg": 1, "rec": 1}, derive_tasks=["rec"], resume=None)
    by_key = {q.qid: q for q in qs}
    seen = {}
    for step in range(30):
        for ex in t.data.examples(step, 2):
            seen.setdefault(ex.task, ex)
    rec, stvg = seen["rec"], seen["stvg"]
    assert rec.relevance_target.tolist() == [1.0]  # one frame of the span: relevant
    q = by_key[stvg.key.rsplit("#", 1)[0]]
    target = stvg.relevance_target.numpy().astype(np.float64)
    starts, ends = frame_segments(np.asarray(stvg.inputs.timestamps, dtype=np.float64), q.num_frames / q.fps)
    s0, s1 = q.span_frames  # frames [s0, s1) own the seconds [(s0 - 0.5) / fps, (s1 - 0.5) / fps)
    expected = (min(s1 - 0.5, q.num_frames) - max(s0 - 0.5, 0.0)) / q.fps
    assert float((target * (ends - starts)).sum()) == pytest.approx(expected, abs=1e-5)
    assert ((target > 0) & (target < 1)).any()  # a sampled frame partly inside the span learns a fraction
    assert stvg.box_mask.any() and ((target > 0.5) == stvg.box_mask.numpy()).mean() > 0.8


def test_train_parts_freeze_the_rest(synth_dir: Path, tmp_path: Path) -> None:
    t = prepare(TINY, _queries(synth_dir), tmp_path, trainer={**FAST, "max_steps": 2},
                train_parts=["queries", "decoder"], resume=None)
    m = t.unwrapped
    assert all(p.requires_grad for p in m.st_query_embed.parameters())
    assert all(p.requires_grad for p in m.space_decoder.parameters())
    assert not any(p.requires_grad for p in m.backbone.parameters())
    before = _state(m)
    t.train()
    after = _state(m)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("space_decoder.") for k in changed) and any(k.startswith("st_query_embed") for k in changed)
    assert not any(k.startswith("backbone.") for k in changed)
    with pytest.raises(ValueError, match="unknown parts"):
        prepare(TINY, _queries(synth_dir), tmp_path / "x", train_parts=["decoder", "eyes"], resume=None)


@pytest.mark.numerics
def test_lora_wraps_the_llm_trains_and_saves_merged(synth_dir: Path, tmp_path: Path) -> None:
    from peft.tuners.lora import LoraLayer

    lora = {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}
    t = prepare(TINY, _queries(synth_dir), tmp_path, trainer={**FAST, "max_steps": 4, "lr": 5e-3},
                train_parts=["queries", "decoder", "llm"], lora=lora, resume=None)
    m = t.unwrapped
    lm = m.backbone.vlm.model.language_model
    assert type(lm).__name__ == "PeftModel" and any(isinstance(x, LoraLayer) for x in lm.modules())
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    assert any("lora_B" in n for n in trainable)
    assert not any("language_model" in n and "lora_" not in n for n in trainable), "the base LLM stays frozen"
    before = _state(m)
    t.train()
    final = t.save_final()
    after = _state(m)
    assert any("lora_B" in k and not torch.equal(before[k], after[k]) for k in before)
    assert all(torch.equal(before[k], after[k]) for k in before if "base_layer" in k)
    loaded = SpaceVLLMForGrounding.from_pretrained(final)  # plain model core format, LoRA folded in
    q = _queries(synth_dir)[0]
    sampled = load_grounder(TINY).sample(q.video)
    m.eval()
    with torch.no_grad():
        a = m(m.prepare_inputs(sampled, q.query))
        b = loaded(loaded.prepare_inputs(sampled, q.query))
    # folding B @ A into the base weight rounds each merged weight once: float32 rounding, not bit equality
    assert_tensors_close(a.pred_boxes, b.pred_boxes, "pred_boxes")
    assert_tensors_close(a.relevance_logits, b.relevance_logits, "relevance_logits")


def test_stvg_train_cli_writes_final_config_and_log(synth_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    code = main(["train", f"annotations={synth_dir / 'annotations.jsonl'}", f"output_dir={out}", "trainer=cpu_tiny",
                 "trainer.max_steps=3", "trainer.save_every=2", "trainer.grad_accum=1", "task_weights.tvg=0.5",
                 "derive_tasks=[tvg]", "model.span_source=relevance"])
    assert code == 0
    assert (out / ".hydra" / "config.yaml").is_file()
    assert (out / "final" / "model.safetensors").is_file() and not list((out / "final").glob("*.bin"))
    rows = _log(out)
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(math.isfinite(r[k]) for r in rows for k in ("loss", "loss_lm", "loss_l1", "loss_giou", "loss_relevance"))
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["tasks"] == {"stvg": len(_queries(synth_dir)), "tvg": len(_queries(synth_dir))}
    g = load_grounder({"preset": "spacevllm_tiny"}, checkpoint=out / "final")
    assert g.model.config.span_source == "relevance"
    # an unknown trainer key is a clear error, not a silent default
    code = main(["train", f"annotations={synth_dir / 'annotations.jsonl'}", f"output_dir={tmp_path / 'bad'}",
                 "+trainer.max_stepz=3"])
    assert code == 2


def test_missing_annotations_fail_before_training(tmp_path: Path, capsys) -> None:
    code = main(["train", f"annotations={tmp_path / 'nope.jsonl'}", f"output_dir={tmp_path / 'o'}"])
    assert code == 2
    assert "annotations" in capsys.readouterr().err
