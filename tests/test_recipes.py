"""Named recipes (prompt + parser) for published STVG-MLLM answer formats, on fixtures of their outputs.

Geometry of every fixture: a 20 s, 10 fps, 640x480 video; 5 listed frames at 2, 6, 10, 14, 18 s
(indices 20, 60, 100, 140, 180); the model saw 320x240 frames (pixel answers are doubled back).
"""

from __future__ import annotations

import pytest

from stvg_plugin.models.families import get_family
from stvg_plugin.parsing import parse_answer
from stvg_plugin.recipes import RECIPES, get_recipe

GEOMETRY = {"duration_s": 20.0, "fps": 10.0, "num_frames": 200, "width": 640, "height": 480,
            "processed_size": (240, 320), "sampled_timestamps": [2.0, 6.0, 10.0, 14.0, 18.0],
            "sampled_indices": [20, 60, 100, 140, 180]}

# (recipe, family whose style it is applied to, documented-format answer, span_s, {frame: box in 640x480 px})
FIXTURES = [
    ("open_o3_video", "qwen2_5_vl",
     "<think>The man enters at <t>5.0</t>s.</think><answer><t>5.0</t>s to <t>11.0</t>s "
     "<obj>man</obj><box>[10,20,100,200]</box>at<t>6.0</t>s <obj>man</obj><box>[20,20,110,200]</box>at<t>10.0</t>s"
     "</answer>",
     (5.0, 11.0), {60: [20, 40, 200, 400], 100: [40, 40, 220, 400]}),
    ("videochat_r1", "qwen2_5_vl",
     "<think>He walks in around 5 s.</think><answer>5.00 to 11.00\n[[0.1, 0.2, 0.5, 0.6], [0.2, 0.2, 0.6, 0.6]]</answer>",
     (5.0, 11.0), {60: [64, 96, 320, 288], 100: [128, 96, 384, 288]}),
    ("stvg_o1", "qwen2_5_vl",
     "<think>...</think><answer>Time range: 5.00 to 11.00\n2. [10, 20, 100, 200]\n3. [20, 20, 110, 200]</answer>",
     (5.0, 11.0), {60: [20, 40, 200, 400], 100: [40, 40, 220, 400]}),
    ("vue_stg", "qwen3_vl",
     "0.25-0.55\n6 s: [0.1, 0.2, 0.5, 0.6]\n10 s: [0.2, 0.2, 0.6, 0.6]",
     (5.0, 11.0), {60: [64, 96, 320, 288], 100: [128, 96, 384, 288]}),
    ("gemini", "qwen3_vl",
     "from 5 s to 11 s\n6 s: [200, 100, 600, 500]\n10 s: [200, 200, 600, 600]",
     (5.0, 11.0), {60: [64, 96, 320, 288], 100: [128, 96, 384, 288]}),
]


def test_every_recipe_has_a_fixture_and_a_source():
    assert {f[0] for f in FIXTURES} == set(RECIPES) - {"default"}
    assert all(r.source for r in RECIPES.values())


@pytest.mark.parametrize(("name", "family", "answer", "span_s", "boxes"), FIXTURES, ids=[f[0] for f in FIXTURES])
def test_documented_output_parses_with_the_recipes_hint(name, family, answer, span_s, boxes):
    style = get_recipe(name).apply(get_family(family).style)
    question = style.question("the man in red", 20.0)
    assert "the man in red" in question and style.header == get_family(family).style.header
    parsed = parse_answer(answer, coord_hint=style.coord_hint(), **GEOMETRY)
    assert not parsed.parse_failed, parsed.reason
    assert parsed.span_s == pytest.approx(span_s)
    assert sorted(parsed.boxes) == sorted(boxes)
    for frame, box in boxes.items():
        assert parsed.boxes[frame] == pytest.approx(box, abs=1e-6)


def test_gemini_order_matters():
    """Read as xyxy, the Gemini fixture would give other boxes: the recipe's yxyx is what makes it right."""
    answer = FIXTURES[-1][2]
    plain = parse_answer(answer, coord_hint="seconds+permille+one_based", **GEOMETRY)
    gemini = parse_answer(answer, coord_hint=get_recipe("gemini").apply(get_family("qwen3_vl").style).coord_hint(),
                          **GEOMETRY)
    assert plain.boxes[60] != pytest.approx(gemini.boxes[60])


def test_unknown_recipe_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown recipe 'nope'; known:"):
        get_recipe("nope")


def test_recipe_key_reaches_the_prompted_backend(tmp_path):
    from stvg_plugin.models import load_grounder
    from stvg_plugin.models.prompted import build_tiny_prompted

    path = build_tiny_prompted(tmp_path / "q", family="qwen2_5_vl")
    grounder = load_grounder({"type": "prompted", "path": str(path), "recipe": "gemini", "num_frames": 2})
    assert "[ymin, xmin, ymax, xmax]" in grounder.style.suffix("x", 4.0)
    assert grounder.style.coord_hint().box_order == "yxyx"
