"""The one home of prompt templates (``stvg_plugin.prompts``): both frame-numbering conventions and the
exact default texts, which saved checkpoints and published recipes depend on."""

from __future__ import annotations

import numpy as np
import pytest

from stvg_plugin.models.configuration_spacevllm import SpaceVLLMConfig
from stvg_plugin.models.presets import PRESETS
from stvg_plugin.models.processing_spacevllm import SpaceVLLMProcessor
from stvg_plugin.models.tokenizer import build_tiny_tokenizer
from stvg_plugin.parsing import parse_answer
from stvg_plugin.prompts import (
    CORE_FRAME_TEMPLATE,
    CORE_INDEX_BASE,
    FRAME_LABEL,
    PROMPTED_INDEX_BASE,
    frame_lines,
    get_style,
    stock_question,
)

TIMES = [0.0, 0.5, 1.25]


def test_frame_lines_number_from_the_given_base():
    assert frame_lines(CORE_FRAME_TEMPLATE, TIMES, index_base=0) == [
        "Frame 0 at 0.00 s:", "Frame 1 at 0.50 s:", "Frame 2 at 1.25 s:"]
    assert frame_lines(FRAME_LABEL, TIMES, index_base=1) == [
        "Frame 1 at 0.00 s: ", "Frame 2 at 0.50 s: ", "Frame 3 at 1.25 s: "]
    # both field spellings name the same number and time
    assert frame_lines("{k}/{index} {t}/{time}", [2.0], index_base=5) == ["5/5 2.0/2.0"]
    with pytest.raises(TypeError):  # no default: every caller states its convention
        frame_lines(FRAME_LABEL, TIMES)  # type: ignore[call-arg]


def test_the_model_core_numbers_frames_from_zero():
    assert CORE_INDEX_BASE == 0
    proc = SpaceVLLMProcessor(build_tiny_tokenizer("chars"), None, SpaceVLLMConfig())
    layout = proc.build_prefix(np.array(TIMES), tokens_per_frame=2, visual_token_id=7)
    ids = layout.input_ids.tolist()
    pos = len(proc._ids(proc.config.prompt_prefix))
    for k, label in enumerate(("Frame 0 at 0.00 s:", "Frame 1 at 0.50 s:", "Frame 2 at 1.25 s:")):
        head = proc._ids(label)
        assert ids[pos:pos + len(head)] == head, f"frame {k}"
        assert layout.frame_of[pos + len(head)].item() == k  # the visual tokens after it are frame k's
        pos += len(head) + 2 + 1 + len(proc._ids(proc.config.frame_suffix))
    assert pos == len(ids)
    # text box answers key the sampled frames from 0 too, and read back the same way
    answer = proc.format_answer((1.0, 2.5), {0: [0.1, 0.2, 0.3, 0.4]})
    assert answer.endswith("frame 0: [0.10, 0.20, 0.30, 0.40]")
    assert proc.parse_boxes(answer, num_frames=3) == {0: [0.1, 0.2, 0.3, 0.4]}


def test_prompted_backends_number_frames_from_one_and_parse_with_the_same_base():
    assert PROMPTED_INDEX_BASE == 1
    style = get_style("generic")
    assert style.prefix(TIMES).endswith("Frame 1 at 0.00 s: <image>\nFrame 2 at 0.50 s: <image>\n"
                                        "Frame 3 at 1.25 s: <image>\n")
    texts = [c["text"] for c in style.messages(TIMES, [{"type": "image"}] * 3, "q")[0]["content"]
             if c.get("text", "").startswith("Frame")]
    assert texts == ["Frame 1 at 0.00 s: ", "Frame 2 at 0.50 s: ", "Frame 3 at 1.25 s: "]
    hint = style.coord_hint()
    assert hint.index_base == 1
    # "Frame 1" is the first listed frame (source frame 10), not the second
    parsed = parse_answer("Time: from 0 s to 2 s\nFrame 1: [0.1, 0.1, 0.5, 0.5]", duration_s=4.0, fps=8.0,
                          num_frames=32, width=100, height=100, sampled_timestamps=[1.25, 2.5, 3.75],
                          sampled_indices=[10, 20, 30], coord_hint=hint)
    assert list(parsed.boxes) == [10]


def test_default_template_texts_are_unchanged():
    """Checkpoints store these in config.json and were trained on them: any edit is a behaviour change."""
    cfg = SpaceVLLMConfig()
    assert cfg.prompt_prefix == "<|im_start|>user\n"
    assert cfg.frame_template == "Frame {index} at {time:.2f} s:"
    assert cfg.frame_suffix == "\n"
    assert cfg.instruction_template == "Find {query}. When is it visible?<|im_end|>\n<|im_start|>assistant\n"
    assert cfg.box_text_template == "frame {index}: [{x1:.2f}, {y1:.2f}, {x2:.2f}, {y2:.2f}]"
    qwen = PRESETS["spacevllm_qwen25vl_tiny"]
    assert qwen["frame_template"] == "Frame {index} at {time:.2f} s: <|vision_start|>"
    assert qwen["frame_suffix"] == "<|vision_end|>\n"
    assert PRESETS["spacevllm_7b"]["prompt_prefix"] == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n")
    assert "frame_template" not in PRESETS["spacevllm_tiny"]  # the LLaVA backbone takes the defaults
    for family in ("qwen2_5_vl", "qwen3_vl", "internvl", "llava_onevision"):
        assert get_style(family).frame_line.startswith("Frame {k} at {t:.2f} s: ")


def test_stock_prompt_text_is_unchanged():
    common = dict(query="a dog", duration_s=12.345, width=640, height=360)
    assert stock_question("stvg", box_scale="pixels", **common) == (
        'The video is 12.3 seconds long and 640x360 pixels. Find: "a dog". Answer with the time span as '
        '"from <start> s to <end> s", then one bounding box per second of that span as "<t> s: [x1, y1, x2, y2]" '
        'in pixels of the 640x360 frame.')
    assert stock_question("tvg", box_scale="pixels", **common) == (
        'The video is 12.3 seconds long. When does this happen: "a dog"? '
        'Answer only with the time span as "from <start> s to <end> s".')
