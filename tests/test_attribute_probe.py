"""Per-attribute analysis of a grounding model: which words a synthetic query needs, word swaps, moved boxes."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from stvg_plugin.data import GroundingPrediction, GroundingQuery
from stvg_plugin.synth import SynthObject, _describe
from stvg_plugin.training.attribute_probe import (
    attribute_scores,
    box_moved,
    box_placement,
    described_others,
    named_values,
    needed_attributes,
    swap_word,
    word_swap_test,
)

WIDTH = 160


def _obj(shape="square", colour="red", size="small", motion="still", x=10):
    return SynthObject(shape, colour, size, motion, 0, 4, np.array([[x, 10, x + 20, 30]] * 4))


def test_needed_attributes_are_those_without_which_another_object_fits():
    rng = np.random.default_rng(0)
    # same shape, only the colour differs: every description names the colour, and it is needed
    for _ in range(20):
        text, needed = _describe(0, [_obj(colour="red"), _obj(colour="blue", x=60)], rng)
        assert "red" in text.split() and needed == ["colour"]
    # different shapes: the shape alone singles the target out, so no attribute is needed
    for _ in range(20):
        text, needed = _describe(0, [_obj(colour="red"), _obj(shape="circle", colour="blue", x=60)], rng)
        assert needed == [] and "square" in text.split()
    # same shape, colour and size differ: either word alone suffices, so neither is needed when both are named
    seen = set()
    for _ in range(40):
        text, needed = _describe(0, [_obj(), _obj(colour="blue", size="large", x=60)], rng)
        named = {a for a, w in (("colour", "red"), ("size", "small")) if w in text.split()}
        assert named and needed == (list(named) if len(named) == 1 else [])
        seen.add(frozenset(named))
    assert len(seen) > 1  # the generator varies its descriptions


def test_swap_word_cycles_within_its_kind():
    assert swap_word("the red square moving left", "colour") == "the green square moving left"
    assert swap_word("the small yellow circle", "colour") == "the small red circle"
    assert swap_word("the small yellow triangle", "shape") == "the small yellow circle"
    assert swap_word("the large square", "colour") is None
    assert swap_word("the reddish square", "colour") is None  # whole words only


def _pred(qid, x, frames=range(4)):
    return GroundingPrediction(qid=qid, span_frames=(0, 4), boxes={f: [x, 10.0, x + 20.0, 30.0] for f in frames})


def test_box_moved_compares_centres_on_shared_frames():
    assert not box_moved(_pred("a", 10), _pred("b", 10 + 0.1 * WIDTH - 1), WIDTH)
    assert box_moved(_pred("a", 10), _pred("b", 10 + 0.1 * WIDTH + 1), WIDTH)
    assert box_moved(_pred("a", 10, range(2)), _pred("b", 10, range(2, 4)), WIDTH)  # no shared frame


def _query(qid, text, needed):
    return GroundingQuery(qid=qid, video=f"{qid}.mp4", query=text, task="stvg", fps=10.0, num_frames=4, width=WIDTH,
                          height=120, span_frames=(0, 4), boxes={f: [10.0, 10.0, 30.0, 30.0] for f in range(4)},
                          extra={"synthetic": {"needed": needed}})


def test_word_swap_test_tells_a_model_that_reads_colours_from_one_that_does_not():
    queries = [_query("a", "the red square", ["colour"]), _query("b", "the blue circle moving left", []),
               _query("c", "the large square", ["size"])]

    def reads_colour(batch):
        return [_pred(q.qid, 100.0 if "red" in q.query.split() else 10.0) for q in batch]

    def ignores_colour(batch):
        return [_pred(q.qid, 100.0 if "square" in q.query.split() else 10.0) for q in batch]

    assert word_swap_test(reads_colour, queries) == {"colour": {"n": 2, "moved": 0.5}, "shape": {"n": 3, "moved": 0.0}}
    assert word_swap_test(ignores_colour, queries) == {"colour": {"n": 2, "moved": 0.0},
                                                       "shape": {"n": 3, "moved": 1.0}}


def _others_query(qid, text, others):
    q = _query(qid, text, [])
    q.extra["synthetic"]["others"] = [{"shape": s, "colour": c, "size": "small", "motion": "still",
                                       "span_frames": [0, 4]} for s, c in others]
    return q


def test_named_values_read_every_attribute_of_a_description():
    assert named_values("the small red circle moving left") == {"shape": "circle", "colour": "red", "size": "small",
                                                               "motion": "left"}
    assert named_values("the large square that stays still") == {"shape": "square", "size": "large", "motion": "still"}
    assert named_values("the triangle") == {"shape": "triangle"}


def test_word_swap_splits_swaps_by_what_the_new_text_names():
    """A swapped colour that names nothing in the video has no right box: a model that grounds the closest
    description keeps it there, as one that ignores colour does; only swaps that name another object (and
    the swap to that object's colour) tell the two apart."""
    queries = [_others_query("a", "the red square", [("square", "blue")]),  # red -> green: names nothing
               _others_query("b", "the green circle", [("circle", "blue")]),  # green -> blue: the other circle
               _others_query("c", "the yellow triangle", [("square", "red")])]  # no other triangle
    assert described_others(queries[0], "the blue square") == queries[0].extra["synthetic"]["others"]
    assert described_others(queries[0], "the green square") == []
    assert described_others(_query("d", "the red square", []), "the red square") is None  # no record

    def closest_description(batch):  # the box moves when the text describes another object of the video
        return [_pred(q.qid, 100.0 if described_others(q, q.query) else 10.0) for q in batch]

    def ignores_colour(batch):
        return [_pred(q.qid, 10.0) for q in batch]

    reads = word_swap_test(closest_description, queries)  # (fractions are rounded to 4 places)
    assert reads["colour"] == {"n": 3, "moved": pytest.approx(1 / 3, abs=5e-5), "names_other": {"n": 1, "moved": 1.0},
                               "names_none": {"n": 2, "moved": 0.0}}
    # the colour of the other object: "the red square" -> "the blue square", "the green circle" -> "the blue circle"
    assert reads["colour_to_other"] == {"n": 2, "moved": 1.0}
    ignores = word_swap_test(ignores_colour, queries)
    assert ignores["colour"]["names_other"] == {"n": 1, "moved": 0.0} and ignores["colour_to_other"]["moved"] == 0.0
    with pytest.raises(ValueError, match="unknown swap kinds"):
        word_swap_test(ignores_colour, queries, kinds=("size",))


def test_colour_to_other_swap_checks_the_box_lands_on_the_named_object():
    q = _others_query("a", "the red square", [("square", "blue")])
    q.extra["synthetic"]["others"][0]["boxes"] = {str(f): [100.0, 10.0, 120.0, 30.0] for f in range(4)}  # as JSON

    def closest_description(batch):
        return [_pred(p.qid, 100.0 if described_others(p, p.query) else 10.0) for p in batch]

    def moves_elsewhere(batch):  # reads the colour word, but its box goes to neither object
        return [_pred(p.qid, 50.0 if "blue" in p.query.split() else 10.0) for p in batch]

    def always_on_the_other(batch):  # the swapped box is right, but so was never the original's
        return [_pred(p.qid, 100.0) for p in batch]

    def run(predict):
        return word_swap_test(predict, [q], kinds=("colour_to_other",))["colour_to_other"]

    assert run(closest_description) == {"n": 1, "moved": 1.0, "on_named_object": 1.0, "both_ways": 1.0}
    assert run(moves_elsewhere) == {"n": 1, "moved": 1.0, "on_named_object": 0.0, "both_ways": 0.0}
    assert run(always_on_the_other) == {"n": 1, "moved": 0.0, "on_named_object": 1.0, "both_ways": 0.0}


def test_box_placement_tells_where_the_misses_go():
    queries = []
    for qid, x in (("on", 10.0), ("other", 100.0), ("near", 22.0), ("away", 60.0)):
        q = _others_query(qid, "the red square", [("circle", "blue")])
        q.extra["synthetic"]["size"] = "small"
        q.extra["synthetic"]["others"][0]["boxes"] = {str(f): [100.0, 10.0, 120.0, 30.0] for f in range(4)}
        queries.append((q, _pred(qid, x)))
    qs, preds = [q for q, _ in queries], [p for _, p in queries]
    # target box [10, 10, 30, 30]: x=22 overlaps it by IoU 0.25, x=60 overlaps nothing
    assert box_placement(qs, preds) == {"shape only": {"on target": 1, "on another object": 1, "near target": 1,
                                                       "elsewhere": 1}}
    assert list(box_placement(qs, preds, by="size")) == ["shape only, small"]
    assert box_placement(qs, preds[:1]) == {"shape only": {"on target": 1, "on another object": 0, "near target": 0,
                                                           "elsewhere": 3}}  # no prediction: elsewhere
    assert box_placement([_query("x", "the red square", [])], [_pred("x", 10.0)]) == {}  # no others recorded
    with pytest.raises(ValueError, match="'needed' or 'size'"):
        box_placement(qs, preds, by="colour")
    with pytest.raises(ValueError, match="'needed' or 'named'"):  # once read as "needed"
        attribute_scores(qs, preds, by="size")


def test_synthetic_queries_record_the_other_objects_their_text_does_not_describe(tmp_path):
    from stvg_plugin.data import read_queries
    from stvg_plugin.synth import generate_synthetic

    queries = read_queries(generate_synthetic(tmp_path, num_videos=6, seed=3, max_distractors=2))
    per_video: dict[str, int] = {}
    for q in queries:
        per_video[q.video] = per_video.get(q.video, 0) + 1
    for q in queries:
        others = q.extra["synthetic"]["others"]
        assert len(others) >= per_video[q.video] - 1 and all(0 <= o["span_frames"][0] < o["span_frames"][1]
                                                            <= q.num_frames for o in others)
        assert described_others(q, q.query) == []  # the generator's descriptions are unique
        for o in others:  # each other object's boxes, one per frame of its span, inside the frame
            assert sorted(int(f) for f in o["boxes"]) == list(range(*o["span_frames"]))
            assert all(0 <= b[0] < b[2] <= q.width and 0 <= b[1] < b[3] <= q.height for b in o["boxes"].values())


def test_attribute_scores_group_by_needed_attribute():
    queries = [_query("a", "the red square", ["colour"]), _query("b", "the circle", []),
               _query("c", "the red square moving left", ["colour", "motion"]), _query("d", "the thing", None)]
    queries[3].extra = {}
    assert needed_attributes(queries[3]) is None and needed_attributes(queries[2]) == ("colour", "motion")
    perfect = [_pred(q.qid, 10.0) for q in queries]
    perfect[0] = GroundingPrediction(qid="a", span_frames=(0, 4), boxes={f: [120.0, 80.0, 140.0, 100.0] for f in range(4)})
    out = attribute_scores(queries, perfect)
    assert set(out) == {"shape only", "colour-needed", "motion-needed"}
    assert out["shape only"] == {"n": 1, "m_tIoU": 1.0, "m_vIoU": 1.0}
    assert out["motion-needed"]["m_vIoU"] == pytest.approx(1.0)
    assert out["colour-needed"]["n"] == 2 and out["colour-needed"]["m_vIoU"] == pytest.approx(0.5)
    named = attribute_scores(queries, perfect, by="named")
    assert {k: v["n"] for k, v in named.items()} == {"colour": 1, "shape": 1, "colour+motion": 1}
    assert named["colour"]["m_vIoU"] == pytest.approx(0.0) and named["shape"]["m_vIoU"] == pytest.approx(1.0)


def test_same_shape_distractors_make_the_other_words_needed():
    import itertools

    from stvg_plugin.synth import COLOURS, MOTIONS, SHAPES, SIZES, _make_objects

    def draw(p, seed):
        return _make_objects(np.random.default_rng(seed), 40, 160, 120, 1, 1, (0.3, 0.7), p)

    same = [len({o.shape for o in draw(1.0, s)}) == 1 for s in range(30)]
    # every distractor is drawn with the target's shape; one that cannot be placed without a collision
    # gives way to the next combination (any shape), as before
    assert sum(same) >= 25
    default = [len({o.shape for o in draw(0.0, s)}) == 1 for s in range(30)]
    assert sum(default) < 20  # shapes drawn like the other attributes (1/3 expected)
    # 0 draws nothing extra: the same objects as before the option existed (the random stream is untouched)
    combos = list(itertools.product(SHAPES, COLOURS, SIZES, MOTIONS))
    rng = np.random.default_rng(5)
    order = rng.permutation(len(combos))
    first = draw(0.0, 5)[0]
    assert (first.shape, first.colour, first.size, first.motion) == combos[order[0]]
    for s in range(30):  # a same-shape distractor: the description needs another word
        objects = draw(1.0, s)
        if len({o.shape for o in objects}) == 1:
            text, needed = _describe(0, objects, np.random.default_rng(s))
            assert len(needed) == 1 or len(text.split()) > 3


def test_learnability_script_runs_the_word_swap_test_on_a_saved_checkpoint(tmp_path, monkeypatch):
    """examples/learnability.py's word-swap step loads the checkpoint through the core's loader (it imported
    ``load_grounder`` from its old module and crashed after training, losing the run's results)."""
    import importlib.util
    from pathlib import Path

    from stvg_plugin.data import read_queries
    from stvg_plugin.models import build_tiny_model
    from stvg_plugin.synth import generate_synthetic

    path = Path(__file__).resolve().parents[1] / "examples" / "learnability.py"
    spec = importlib.util.spec_from_file_location("learnability_example", path)
    learnability = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(learnability)
    build_tiny_model("spacevllm_tiny").save_pretrained(tmp_path / "ckpt")
    annotations = generate_synthetic(tmp_path / "synth", num_videos=2, seed=3, max_queries_per_video=1)
    queries = read_queries(annotations)
    line = learnability.swap_summary({"colour": {"n": 47, "moved": 0.28, "names_other": {"n": 4, "moved": 0.75}},
                                      "colour_to_other": {"n": 18, "moved": 0.94, "on_named_object": 1.0}})
    assert line == ("colour 28% of 47 (naming another object: 75% of 4), "
                    "colour_to_other 94% of 18 (box on the named object: 100%)")
    result = learnability.word_swap(tmp_path / "ckpt", queries)
    assert {"colour", "shape"} <= set(result) <= {"colour", "shape", "colour_to_other"}
    assert result["shape"]["n"] == len(queries) and 0.0 <= result["shape"]["moved"] <= 1.0
    # --score CHECKPOINT: the real `stvg predict` on the held-out videos, then the same scores as after training
    scored = learnability.score_checkpoint(tmp_path / "ckpt", tmp_path / "predict", annotations, swap=False)
    assert (tmp_path / "predict" / "predictions.jsonl").is_file()
    assert set(scored) == {"scores", "predict_s", "by_attribute", "by_named_attributes", "placement",
                           "placement_by_size"}
    # every query placed once in its needed-attribute groups (the generator records the other objects)
    assert sum(sum(v.values()) for v in scored["placement"].values()) >= len(queries)
    assert set(scored["scores"]) == set(learnability.KEYS) and 0.0 <= scored["scores"]["m_tIoU"] <= 1.0
    # the recipe is the demo's (one home): conf/demo.yaml's train_model and train_overrides
    import yaml

    demo = yaml.safe_load((path.parents[1] / "conf" / "demo.yaml").read_text())
    assert learnability.TRAINER == demo["train_overrides"] and learnability.MODEL == [f"model={demo['train_model']}"]
    # --ablation-only on a folder without an earlier run: one line saying what it needs (it was a traceback)
    monkeypatch.setattr(sys, "argv", ["learnability.py", "--out", str(tmp_path / "empty"), "--ablation-only"])
    with pytest.raises(SystemExit, match="adds to an earlier run"):
        learnability.main()
