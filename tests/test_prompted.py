"""The prompted backend end to end: a tiny random Qwen2.5-VL saved to disk, real MP4s, the real parser."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from close import assert_tensors_close

from stvg_plugin.data import GroundingQuery, StvgError, read_queries
from stvg_plugin.models.prompted import PromptedGrounder, build_tiny_prompted
from stvg_plugin.parsing import parse_answer
from stvg_plugin.prompts import FAMILIES, get_style
from stvg_plugin.video import sample_video

GEN = {"num_frames": 4, "max_new_tokens": 16, "num_workers": 0}


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_prompted(tmp_path_factory.mktemp("tiny_prompted"), seed=0)


@pytest.fixture(scope="module")
def queries(synth_dir: Path) -> list[GroundingQuery]:
    return read_queries(synth_dir / "annotations.jsonl")


def count_vision_calls(grounder: PromptedGrounder) -> list[int]:
    calls = [0]
    grounder.model.model.visual.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_checkpoint_is_a_plain_local_folder(tiny_ckpt: Path):
    names = {p.name for p in tiny_ckpt.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json"} <= names
    assert json.loads((tiny_ckpt / "config.json").read_text())["model_type"] == "qwen2_5_vl"


def test_predict_end_to_end_on_real_videos(tiny_ckpt: Path, queries: list[GroundingQuery]):
    grounder = PromptedGrounder.from_pretrained(tiny_ckpt, **GEN)
    preds = list(grounder.predict(queries, progress=False))
    assert [p.qid for p in preds] == [q.qid for q in queries]
    for p in preds:
        assert p.error is None
        assert p.raw_text is not None
        assert p.extra["backend"] == "prompted:qwen2_5_vl"
        # random text: either flagged as a parse failure or parsed into something usable
        assert p.parse_failed or p.span_frames is not None or p.boxes
        if p.parse_failed:
            assert p.span_frames is None and p.boxes == {}


def test_video_encoded_once_and_equal_to_one_by_one(tiny_ckpt: Path, queries: list[GroundingQuery]):
    video = queries[0].video
    texts = ["the red circle", "a small square moving left", "the triangle"]
    sampled = sample_video(video, num_frames=4)

    cached = PromptedGrounder.from_pretrained(tiny_ckpt, **GEN)
    calls = count_vision_calls(cached)
    together = cached.ground(sampled, texts)
    assert calls[0] == 1  # one vision pass for three queries
    one_by_one = [cached.ground(sampled, [t])[0] for t in texts]
    assert [p.raw_text for p in together] == [p.raw_text for p in one_by_one]

    uncached = PromptedGrounder.from_pretrained(tiny_ckpt, reuse_video_cache=False, **GEN)
    calls = count_vision_calls(uncached)
    reference = uncached.ground(sampled, texts)
    assert calls[0] == len(texts)  # the reference path re-encodes per query
    assert [p.raw_text for p in together] == [p.raw_text for p in reference]


@pytest.mark.numerics  # two computations of one logit vector: equal to float32 rounding (tests/close.py)
def test_cached_prefix_gives_same_logits_as_full_pass(tiny_ckpt: Path, queries: list[GroundingQuery]):
    grounder = PromptedGrounder.from_pretrained(tiny_ckpt, **GEN)
    sampled = sample_video(queries[0].video, num_frames=4)
    prefix = grounder._encode_video(sampled)
    suffix = grounder.tokenizer(grounder.style.suffix("the circle", 8.0), add_special_tokens=False,
                                return_tensors="pt")["input_ids"]
    inputs = grounder.question_inputs(prefix, grounder.style.suffix("the circle", 8.0))  # cached: no pixels
    assert "pixel_values" not in inputs and inputs["input_ids"].shape[1] == prefix.input_ids.shape[1] + suffix.shape[1]
    with torch.inference_mode():
        full = grounder.model(**inputs, pixel_values=prefix.inputs["pixel_values"]).logits[0, -1]
        grounder.model.model.rope_deltas = prefix.state["rope_deltas"]
        step_inputs = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
        step = grounder.model(input_ids=suffix, cache=copy.deepcopy(prefix.cache), **step_inputs).logits[0, -1]
    assert_tensors_close(step, full, "cached-prefix logits")


def test_bad_video_gives_error_predictions_not_exceptions(tiny_ckpt: Path, queries: list[GroundingQuery], tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    bad = [GroundingQuery(qid="bad1", video=str(broken), query="x"),
           GroundingQuery(qid="bad2", video=str(tmp_path / "missing.mp4"), query="y")]
    grounder = PromptedGrounder.from_pretrained(tiny_ckpt, **GEN)
    preds = {p.qid: p for p in grounder.predict(bad + queries[:1], progress=False)}
    assert set(preds) == {"bad1", "bad2", queries[0].qid}
    assert "broken.mp4" in preds["bad1"].error and "missing.mp4" in preds["bad2"].error
    assert preds[queries[0].qid].error is None


def test_loading_errors_are_clear(tmp_path, tiny_ckpt: Path):
    with pytest.raises(StvgError, match="not found"):
        PromptedGrounder.from_pretrained(tmp_path / "nope")
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(StvgError, match="not supported"):
        PromptedGrounder.from_pretrained(other)


# --------------------------------------------------------------------------- prompts


@pytest.mark.parametrize("family", FAMILIES)
def test_prompt_lists_frames_and_puts_video_first(family):
    style = get_style(family)
    prefix = style.prefix([0.5, 2.25])
    assert "Frame 1 at 0.50 s" in prefix and "Frame 2 at 2.25 s" in prefix
    suffix = style.suffix("the man in red", 12.0)
    assert '"the man in red"' in suffix and "12.00 s" in suffix
    assert "Frame 1" not in suffix  # nothing video-specific after the question starts
    with pytest.raises(ValueError, match="task"):
        style.suffix("x", 1.0, task="vqa")


def test_answer_in_the_requested_format_parses_exactly():
    style = get_style("qwen2_5_vl")
    answer = "Time: from 2.0 s to 5.0 s\nFrame 2: [10, 20, 110, 220]\nFrame 3: [12, 22, 112, 222]"
    r = parse_answer(answer, duration_s=8.0, fps=10.0, num_frames=80, width=160, height=120,
                     processed_size=(240, 320), sampled_timestamps=[1.0, 3.0, 5.0, 7.0],
                     sampled_indices=[10, 30, 50, 70], coord_hint=style.coord_hint())
    assert r.span_s == (2.0, 5.0) and r.span_frames == (20, 51)
    assert r.boxes == {30: [5.0, 10.0, 55.0, 110.0], 50: [6.0, 11.0, 56.0, 111.0]}


def test_unknown_family_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown prompt family"):
        get_style("gpt5")


def test_prefix_pass_keeps_last_position_logits_only(tiny_ckpt: Path, queries: list[GroundingQuery]):
    grounder = PromptedGrounder.from_pretrained(tiny_ckpt, **GEN)
    shapes: list[tuple[int, ...]] = []
    handle = grounder.model.register_forward_hook(lambda _m, _a, out: shapes.append(tuple(out.logits.shape)))
    prefix = grounder._encode_video(sample_video(queries[0].video, num_frames=4))
    handle.remove()
    assert prefix.input_ids.shape[1] > 100 and shapes == [(1, 1, grounder.model.config.text_config.vocab_size)]
