"""Prompt layout, tokenizer, answer templates and the span/box decoding rules of the model core."""

from __future__ import annotations

import numpy as np
import pytest

from stvg_plugin.data import Span
from stvg_plugin.models import build_tiny_model
from stvg_plugin.models.backbones import QUERY, TEXT, VISUAL
from stvg_plugin.models.decoding import VideoGeometry, build_prediction, choose_span, fill_span_boxes, relevance_span
from stvg_plugin.models.tokenizer import build_char_tokenizer
from stvg_plugin.parsing import format_span_text


@pytest.fixture(scope="module")
def tiny():
    return build_tiny_model("spacevllm_tiny")


def test_char_tokenizer_round_trips_any_text_and_knows_specials():
    tok = build_char_tokenizer()
    text = "Frame 3 at 1.20 s: the Man-in [red], 42%?"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text)
    assert tok.unk_token_id not in ids
    assert tok.decode(ids) == text
    assert tok.convert_tokens_to_ids("<|im_end|>") == tok.eos_token_id
    assert len(tok("<|im_start|>", add_special_tokens=False)["input_ids"]) == 1


def test_prefix_layout_interleaves_frames_queries_and_timestamps(tiny):
    proc = tiny.processor
    ts = np.array([0.2, 0.6, 1.25])
    layout = proc.build_prefix(ts, tokens_per_frame=4, visual_token_id=7)
    kinds, frames = layout.kinds.tolist(), layout.frame_of.tolist()
    assert kinds.count(VISUAL) == 12 and kinds.count(QUERY) == 3
    for i in range(3):
        vis = [k for k, (kind, f) in enumerate(zip(kinds, frames)) if kind == VISUAL and f == i]
        q = [k for k, (kind, f) in enumerate(zip(kinds, frames)) if kind == QUERY and f == i]
        assert vis == list(range(vis[0], vis[0] + 4)), "a frame's visual tokens are contiguous"
        assert q == [vis[-1] + 1], "the query token comes right after its frame's visual tokens"
    assert layout.positions(QUERY).tolist() == sorted(layout.positions(QUERY).tolist())
    text_ids = layout.input_ids[layout.kinds == TEXT].tolist()
    text = proc.tokenizer.decode(text_ids)
    assert "Frame 0 at 0.20 s:" in text and "Frame 2 at 1.25 s:" in text
    assert text.index("Frame 1 at 0.60 s:") > text.index("Frame 0 at 0.20 s:")
    # the referring text is not part of the prefix: it goes after the video
    instr = proc.instruction("the red ball")
    assert "the red ball" in proc.tokenizer.decode(instr.input_ids.tolist())
    assert proc.tokenizer.decode(instr.input_ids[instr.query_mask].tolist()) == "the red ball"
    assert not instr.query_mask[0]


def test_instruction_rejects_empty_query(tiny):
    with pytest.raises(ValueError, match="empty"):
        tiny.processor.instruction("   ")


def test_answer_template_and_box_text_round_trip(tiny):
    proc = tiny.processor
    text = proc.format_answer((1.0, 2.5), {0: [0.1, 0.2, 0.5, 0.6], 3: [0.25, 0.3, 0.75, 0.9]})
    assert text.startswith(format_span_text(1.0, 2.5))
    assert proc.parse_span(text) == (1.0, 2.5)
    boxes = proc.parse_boxes(text, num_frames=8)
    assert sorted(boxes) == [0, 3]
    assert boxes[3] == pytest.approx([0.25, 0.3, 0.75, 0.9])
    assert proc.parse_boxes(text, num_frames=2) == {0: pytest.approx([0.1, 0.2, 0.5, 0.6])}
    assert proc.parse_boxes("garbage [1, 2]", 8) == {}
    ans = proc.answer_ids("from 1.0 s to 2.0 s")
    assert int(ans[-1]) == proc.eos_token_id


def test_relevance_span_longest_run_with_half_gaps():
    ts = np.array([0.5, 1.5, 2.5, 3.5, 4.5])
    assert relevance_span(np.array([0.9, 0.1, 0.8, 0.7, 0.2]), ts, 5.0) == (2.0, 4.0)
    assert relevance_span(np.array([0.6, 0.6, 0.1, 0.1, 0.9]), ts, 5.0) == (0.0, 2.0)
    assert relevance_span(np.array([0.1, 0.2, 0.6, 0.7, 0.8]), ts, 5.0) == (2.0, 5.0)
    assert relevance_span(np.zeros(5), ts, 5.0) is None


def test_choose_span_switches():
    t, r = (1.0, 3.0), (2.0, 5.0)
    assert choose_span(t, r, "text") == (t, "text")
    assert choose_span(t, r, "relevance") == (r, "relevance")
    assert choose_span(t, r, "combined") == ((1.5, 4.0), "combined")
    assert choose_span(None, r, "combined") == (r, "relevance")
    assert choose_span(None, r, "text") == (r, "relevance")
    assert choose_span(None, None, "combined") == (None, None)


def test_fill_span_boxes_interpolates_and_holds_ends():
    frames = np.array([10, 20])
    boxes = np.array([[0, 0, 10, 10], [10, 10, 30, 30]], dtype=float)
    out = fill_span_boxes(Span(5, 26), frames, boxes, width=100, height=100)
    assert sorted(out) == list(range(5, 26))
    assert out[5] == [0, 0, 10, 10]  # nearest before the first sampled frame
    assert out[15] == pytest.approx([5, 5, 20, 20])
    assert out[25] == [10, 10, 30, 30]  # held after the last one
    clipped = fill_span_boxes(Span(0, 1), np.array([0]), np.array([[-5, -5, 200, 50]], float), 100, 80)
    assert clipped[0] == [0, 0, 100, 50]


def _geometry():
    idx = np.array([5, 15, 25, 35])
    return VideoGeometry(indices=idx, timestamps=idx / 10.0, fps=10.0, num_frames=40, width=200, height=100)


def test_build_prediction_maps_text_seconds_to_original_frames():
    g = _geometry()
    boxes = np.tile([0.5, 0.5, 0.2, 0.4], (4, 1))
    pred = build_prediction(
        "q", "from 1.0 s to 2.5 s", g, span_source="text", decoder_boxes_cxcywh=boxes, relevance_logits=np.full(4, -5.0)
    )
    assert pred.span_frames == (10, 26) and pred.span_source == "text" and not pred.parse_failed
    assert sorted(pred.boxes) == list(range(10, 26))
    assert pred.boxes[12] == pytest.approx([80.0, 30.0, 120.0, 70.0])  # cxcywh norm -> abs xyxy
    assert pred.raw_text == "from 1.0 s to 2.5 s"


def test_build_prediction_falls_back_and_never_raises():
    g = _geometry()
    boxes = np.tile([0.5, 0.5, 0.2, 0.4], (4, 1))
    logits = np.array([-3.0, 3.0, 3.0, -3.0])
    pred = build_prediction(
        "q", "no idea", g, span_source="combined", decoder_boxes_cxcywh=boxes, relevance_logits=logits
    )
    assert pred.span_source == "relevance" and pred.span_s == pytest.approx((1.0, 3.0))
    assert pred.span_frames == (10, 31)
    failed = build_prediction(
        "q", "???", g, span_source="text", decoder_boxes_cxcywh=boxes, relevance_logits=np.full(4, -3.0)
    )
    assert failed.parse_failed and failed.span_frames is None and failed.boxes == {} and failed.raw_text == "???"


def test_build_prediction_text_boxes_replace_decoder_boxes():
    g = _geometry()
    text_boxes = {1: [0.0, 0.0, 0.5, 0.5], 2: [0.5, 0.5, 1.0, 1.0]}
    pred = build_prediction(
        "q",
        "from 1.5 s to 2.5 s",
        g,
        span_source="text",
        decoder_boxes_cxcywh=None,
        relevance_logits=None,
        text_boxes_xyxy=text_boxes,
    )
    assert pred.boxes[15] == pytest.approx([0, 0, 100, 50])
    assert pred.boxes[25] == pytest.approx([100, 50, 200, 100])
    assert pred.boxes[20] == pytest.approx([50, 25, 150, 75])


def test_word_tokenizer_keeps_common_words_whole_and_spells_the_rest():
    from stvg_plugin.models.tokenizer import build_word_tokenizer

    tok = build_word_tokenizer()
    chars = build_char_tokenizer()
    assert len(tok) > len(chars) + 200
    for name in ("<|im_end|>", "<image>", "a", "7", " "):  # the character ids are kept as they were
        assert tok.convert_tokens_to_ids(name) == chars.convert_tokens_to_ids(name)
    ids = tok("the small red circle", add_special_tokens=False)["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == ["the", " ", "small", " ", "red", " ", "circle"]
    text = "Frame 3 at 1.20 s: the Man-in [red], reddish 42%?"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in ids and tok.decode(ids) == text
    pieces = tok.convert_ids_to_tokens(ids)
    assert "red" in pieces and "reddish" not in pieces and pieces.count("d") >= 2  # no partial-word match
    assert tok.convert_ids_to_tokens(tok("from 12.5 s", add_special_tokens=False)["input_ids"])[2:6] == [
        "1", "2", ".", "5"]  # numbers stay digit by digit, as the answer template needs


def test_tiny_model_with_word_tokenizer_saves_and_reloads_it(tmp_path):
    from stvg_plugin.models import SpaceVLLMForGrounding

    model = build_tiny_model({"preset": "spacevllm_tiny", "tokenizer": "words"})
    assert model.backbone.vlm.get_input_embeddings().num_embeddings >= len(model.processor.tokenizer)
    model.save_pretrained(tmp_path / "ckpt")
    back = SpaceVLLMForGrounding.from_pretrained(tmp_path / "ckpt")
    q = "the small red circle"
    assert back.processor.instruction(q).input_ids.tolist() == model.processor.instruction(q).input_ids.tolist()
