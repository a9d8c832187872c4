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


def test_coverage_target_and_sub_frame_span_recover_the_gt_span_exactly():
    from stvg_plugin.data import seconds_to_span
    from stvg_plugin.models.decoding import frame_segments, segment_coverage
    from stvg_plugin.video.indices import uniform_indices

    ts = np.array([0.15, 0.45, 0.75, 1.05])
    starts, ends = frame_segments(ts, 1.2)
    assert starts.tolist() == pytest.approx([0.0, 0.3, 0.6, 0.9]) and ends.tolist() == pytest.approx([0.3, 0.6, 0.9, 1.2])
    cover = segment_coverage(ts, 1.2, (4, 9), fps=10.0)  # frames 4..8 own [0.35, 0.85) s
    assert cover.tolist() == pytest.approx([0.0, 5 / 6, 5 / 6, 0.0])
    assert relevance_span(cover, ts, 1.2, sub_frame=True) == pytest.approx((0.35, 0.85))
    assert relevance_span(cover, ts, 1.2) == pytest.approx((0.3, 0.9))  # whole segments otherwise
    # one frame above 0.5: its uncovered part lies on the side away from a covered neighbour
    cover = segment_coverage(ts, 1.2, (5, 8), fps=10.0)  # [0.45, 0.75) s: 0.5 of segment 1, 0.5 of segment 2
    assert cover.tolist() == pytest.approx([0.0, 0.5, 0.5, 0.0])
    assert relevance_span(cover + [0, 0.01, 0, 0], ts, 1.2, sub_frame=True) == pytest.approx((0.447, 0.75))
    # a NaN neighbour (a broken logit) is read as uncovered, not carried into the span's seconds
    assert relevance_span(np.array([np.nan, 1.0, 1.0, 0.0]), ts, 1.2, sub_frame=True) == pytest.approx((0.3, 0.9))
    # every span of 40- and 57-frame videos at 16 sampled frames comes back frame-exact (spans of 8+ frames
    # hold a whole segment, so one sampled frame is above 0.5; shorter ones may be split below it)
    for num_frames in (40, 57):
        idx = uniform_indices(num_frames, 16)
        for start in range(0, num_frames - 8):
            for end in range(start + 8, num_frames + 1, 3):
                p = segment_coverage(idx / 10.0, num_frames / 10.0, (start, end), 10.0)
                t0, t1 = relevance_span(p, idx / 10.0, num_frames / 10.0, sub_frame=True)
                assert seconds_to_span(t0, t1, 10.0, num_frames) == Span(start, end), (num_frames, start, end)


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


def test_fill_span_boxes_continues_the_motion_half_a_gap_past_the_ends():
    # a 10x10 box moving +1 px/frame in x and -0.5 px/frame in y, sampled at frames 10 and 20
    frames = np.array([10, 20])
    boxes = np.array([[10, 50, 20, 60], [20, 45, 30, 55]], dtype=float)
    out = fill_span_boxes(Span(2, 30), frames, boxes, width=100, height=100, continue_motion=True)
    assert out[15] == pytest.approx([15, 47.5, 25, 57.5])  # inside: interpolated as before
    assert out[7] == pytest.approx([7, 51.5, 17, 61.5])  # 3 frames before the first: moved on, same size
    assert out[5] == pytest.approx([5, 52.5, 15, 62.5])  # half the gap (5 frames): as far as it goes
    assert out[2] == out[5]  # beyond half the gap: held
    assert out[25] == pytest.approx([25, 42.5, 35, 52.5]) and out[29] == out[25]
    # one sampled frame: no velocity, held
    one = fill_span_boxes(Span(8, 12), frames[:1], boxes[:1], 100, 100, continue_motion=True)
    assert one[8] == one[11] == [10, 50, 20, 60]
    # moved past the frame edge: clipped like any box
    edge = fill_span_boxes(Span(0, 10), frames, boxes - [8, 0, 8, 0], 100, 100, continue_motion=True)
    assert edge[5] == pytest.approx([0, 52.5, 7, 62.5])


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


def test_build_prediction_boxes_come_from_the_sampled_frames_in_the_span():
    # four sampled frames (5, 15, 25, 35); the span covers 15 and 25 only. The decoder's boxes on 5 and 35 are
    # where the object is not (here far away); the span's frames follow 15 -> 25 and its motion past them.
    g = _geometry()
    boxes = np.array([[0.9, 0.9, 0.1, 0.1], [0.3, 0.5, 0.1, 0.2], [0.4, 0.5, 0.1, 0.2], [0.05, 0.05, 0.1, 0.1]])
    logits = np.array([-3.0, 3.0, 3.0, -3.0])
    pred = build_prediction("q", "", g, span_source="relevance", decoder_boxes_cxcywh=boxes, relevance_logits=logits)
    assert pred.span_frames == (10, 31)
    # centre x 60 px at frame 15, 80 px at 25 (width 200): +2 px per frame, continued 5 frames each way
    assert pred.boxes[10] == pytest.approx([40.0, 40.0, 60.0, 60.0])
    assert pred.boxes[20] == pytest.approx([60.0, 40.0, 80.0, 60.0])
    assert pred.boxes[30] == pytest.approx([80.0, 40.0, 100.0, 60.0])


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
