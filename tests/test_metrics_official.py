"""Issue 15: each protocol gives its official evaluator's numbers on the odd inputs that evaluator accepts.

Every test holds the tiny input that shows one quirk; the expected numbers were derived by reading the
official code (repository, file and line in the comment; commits in docs/PROTOCOLS.md).
"""

from __future__ import annotations

import ast
import json
import math
import random

import pytest

from stvg_plugin.adapters import load_benchmark
from stvg_plugin.data import GroundingPrediction, GroundingQuery
from stvg_plugin.metrics import evaluate, score_query
from stvg_plugin.metrics.literal import parse_number_pair
from stvg_plugin.metrics.vstar import vstar_spatial_metrics, vstar_tiou
from stvg_plugin.metrics.vue_stg import build_tube, compare_tubes, union_area

BOX = [0.0, 0.0, 10.0, 10.0]
FAR = [50.0, 50.0, 60.0, 60.0]


def stvg_query(qid: str = "q", boxes: dict | None = None, span=(10, 20)) -> GroundingQuery:
    return GroundingQuery(
        qid=qid, video=f"{qid}.mp4", query="x", fps=5.0, num_frames=100, width=100, height=100,
        span_frames=span, boxes=boxes if boxes is not None else {f: list(BOX) for f in range(*span)},
    )  # fmt: skip


# ------------------------------------------------------------------ HC-STVG eval_hcvg.py (official_hcstvg)


def test_eval_hcvg_scores_boxes_outside_the_predicted_span():
    # eval_hcvg.py l.58-65: the loop runs over GT frames with a predicted box, whatever st/ed say;
    # GT 10-19, predicted span 15-19, exact boxes on 10-19 -> all_frame = 19 - 10 + 1 = 10, 10 IoUs of 1.
    p = GroundingPrediction(qid="q", span_frames=(15, 20), boxes={f: list(BOX) for f in range(10, 20)})
    row = score_query(stvg_query(), p, protocol="official_hcstvg")
    assert row["tIoU"] == 1.0 and row["vIoU"] == 1.0


def test_eval_hcvg_zero_area_and_swapped_boxes():
    # l.17: `if x1 >= x2 or y1 >= y2: return 0` - a zero-area box scores IoU 0 but is still a key, so it
    # counts in tIoU = len(ious) / all_frame (l.65); swapped corners give IoU 0 (no repair).
    boxes = {f: list(BOX) for f in range(10, 20)}
    boxes[10] = [5.0, 5.0, 5.0, 9.0]
    boxes[11] = [10.0, 10.0, 0.0, 0.0]
    row = score_query(stvg_query(), GroundingPrediction(qid="q", span_frames=(10, 20), boxes=boxes),
                      protocol="official_hcstvg")  # fmt: skip
    assert row["tIoU"] == 1.0 and row["vIoU"] == pytest.approx(0.8)
    fixed = score_query(stvg_query(), GroundingPrediction(qid="q", span_frames=(10, 20), boxes=boxes),
                        protocol="official_hcstvg", repair=True)  # fmt: skip
    assert fixed["vIoU"] == pytest.approx(0.9) and fixed["tIoU"] == pytest.approx(0.9)  # repaired / rejected


def test_eval_hcvg_gt_with_a_missing_frame():
    # l.58: only GT frames that have a box are looped over; the denominator is still ed - st + 1.
    gt = {f: list(BOX) for f in range(10, 20) if f != 15}
    p = GroundingPrediction(qid="q", span_frames=(10, 20), boxes={f: list(BOX) for f in range(10, 20)})
    row = score_query(stvg_query(boxes=gt), p, protocol="official_hcstvg")
    assert row["tIoU"] == pytest.approx(0.9) and row["vIoU"] == pytest.approx(0.9)


def test_eval_hcvg_reversed_predicted_span_is_read_as_given():
    # l.62: all_frame = max(ed) - min(st) + 1 on the raw values; {st: 19, ed: 10} (our [19, 11)) -> 10.
    p = GroundingPrediction(qid="q", span_frames=(19, 11), boxes={f: list(BOX) for f in range(10, 20)})
    row = score_query(stvg_query(), p, protocol="official_hcstvg")
    assert row["tIoU"] == 1.0 and row["vIoU"] == 1.0
    res = evaluate([stvg_query()], [p], protocol="official_hcstvg")
    assert res.summary["num_reversed_spans"] == 1 and res.summary["repair"] is False


def test_eval_hcvg_missing_video_scores_zero_and_counts():
    # l.50-52: a video absent from the predictions scores 0 and is averaged.
    qs = [stvg_query("a"), stvg_query("b")]
    p = GroundingPrediction(qid="a", span_frames=(10, 20), boxes={f: list(BOX) for f in range(10, 20)})
    s = evaluate(qs, [p], protocol="official_hcstvg").summary
    assert s["m_vIoU"] == pytest.approx(0.5) and s["num_missing"] == 1


# ------------------------------------------------------------------ TubeDETR / STCAT / CG-STVG


@pytest.mark.parametrize("protocol", ["tubedetr", "stcat", "cg_stvg"])
def test_swapped_corners_score_zero_without_repair(protocol):
    # TubeDETR util/box_ops.py l.38: wh = (rb - lt).clip(min=0) -> a swapped box has no intersection.
    p = GroundingPrediction(qid="q", span_frames=(10, 20), boxes={f: [10.0, 10.0, 0.0, 0.0] for f in range(100)})
    assert score_query(stvg_query(), p, protocol=protocol)["gt_vIoU"] == 0.0
    assert score_query(stvg_query(), p, protocol=protocol, repair=True)["gt_vIoU"] == 1.0


def test_tubedetr_reversed_span_is_not_swapped():
    # hcstvg_eval.py l.117-130: max_start / min_end on the raw sted; a reversed span has no intersection.
    p = GroundingPrediction(qid="q", span_frames=(20, 10), boxes={f: list(BOX) for f in range(100)})
    assert score_query(stvg_query(), p)["tIoU"] == 0.0 and score_query(stvg_query(), p)["vIoU"] == 0.0
    assert score_query(stvg_query(), p, repair=True)["tIoU"] == 1.0


@pytest.mark.parametrize("protocol", ["stcat", "cg_stvg"])
def test_stcat_gt_viou_averages_every_gt_frame_including_the_last(protocol):
    # STCAT datasets/evaluation/hcstvg_eval.py l.85 + l.112: gt_viou sums over every GT box frame and
    # divides by len(vid2box); only viou reads the GT end as exclusive (range(max_start, min_end), l.78).
    boxes = {f: list(BOX) for f in range(10, 19)}
    boxes[19] = list(FAR)
    p = GroundingPrediction(qid="q", span_frames=(10, 20), boxes=boxes)
    assert score_query(stvg_query(), p, protocol=protocol)["gt_vIoU"] == pytest.approx(0.9)


@pytest.mark.parametrize("protocol", ["stcat", "cg_stvg", "llava_next_stvg"])
def test_stcat_missing_video_is_left_out_of_the_means(protocol):
    # STCAT hcstvg_eval.py l.44: `for video_id, video_pred in video_predictions.items()` - the mean's
    # counter only counts predicted videos.
    qs = [stvg_query("a"), stvg_query("b")]
    p = GroundingPrediction(qid="a", span_frames=(10, 20), boxes={f: list(BOX) for f in range(100)})
    res = evaluate(qs, [p], protocol=protocol)
    assert res.summary["m_tIoU"] == pytest.approx(res.per_query[0]["tIoU"]) and res.summary["num_missing"] == 1


def test_cg_stvg_missing_frame_counts_zero_stcat_crash_counts_zero():
    # CG-STVG hcstvg_eval.py l.98 `continue` (IoU 0, still in len(vid2box)); STCAT l.87 raises -> 0 here.
    boxes = {f: list(BOX) for f in range(10, 20) if f != 12}
    p = GroundingPrediction(qid="q", span_frames=(10, 20), boxes=boxes)
    for protocol in ("stcat", "cg_stvg"):
        assert score_query(stvg_query(), p, protocol=protocol)["gt_vIoU"] == pytest.approx(0.9)


def test_hcstvg_st_frame_zero_is_read_and_scored_by_tubedetr(tmp_path):
    # TubeDETR reads st_frame as a 0-based index, so st_frame 0 is a valid tube start for its loader.
    entry = {"img_num": 100, "width": 100, "height": 100, "caption": "x", "st_frame": 0,
             "bbox": [[0, 0, 10, 10]] * 10}  # fmt: skip
    path = tmp_path / "test.json"
    path.write_text(json.dumps({"v.mp4": entry, "w.mp4": {**entry, "st_frame": 5}}))
    qs = load_benchmark("hcstvg_v1", path)
    assert [q.span_frames for q in qs] == [(-1, 9), (4, 14)]
    preds = [GroundingPrediction(qid=q.qid, span_frames=(q.span_frames[0] + 1, q.span_frames[1] + 1),
                                 boxes={f + 1: [0, 0, 10, 10] for f in range(-1, 20)}) for q in qs]  # fmt: skip
    s = evaluate(qs, preds, protocol="tubedetr").summary
    assert s["m_tIoU"] == 1.0 and s["num_queries"] == 2


# ------------------------------------------------------------------ V-STaR eval.py


def vstar_query(qid: str = "s", gt_boxes=(("3", BOX),)) -> GroundingQuery:
    return GroundingQuery(
        qid=qid, video="s.mp4", query="when", fps=1.0, num_frames=10, span_s=(2.0, 6.0),
        extra={"vstar_gt_boxes": [list(b) for b in gt_boxes], "domain": "Sports", "duration_bucket": "Short"},
    )  # fmt: skip


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("[4, 8]", 1 / 3),
        ("4, 8", 1 / 3),  # a bare tuple is a literal
        ("(4.0, 8e0)", 1 / 3),
        ("from 4 to 8 seconds", 0.0),  # l.75 literal_eval raises -> l.77 returns 0
        (["4", "8"], 0.0),  # l.80: items must be int/float
        ("3-5", 0.0),  # a BinOp literal_eval rejects (not [3, -5])
        ("", 0.0),  # l.69: falsy
        ("[4, 8, 9]", 0.0),
        ([True, 8], 4 / 7),  # bool is an int
    ],
)
def test_vstar_temporal_answers_read_like_literal_eval(answer, expected):
    assert vstar_tiou((2, 6), answer) == pytest.approx(expected)


def test_vstar_malformed_box_in_a_list_zeroes_the_frame():
    # l.116-124: a TypeError anywhere inside the try (a string coordinate) returns 0 for the whole
    # frame, while a box of the wrong length only scores 0 itself (compute_iou l.97).
    gt = [("3", BOX)]
    assert vstar_spatial_metrics(gt, {"3": [[0, 0, 10, 10], [0, 0, "a", 5]]})[1] == 0.0
    assert vstar_spatial_metrics(gt, {"3": [[0, 0, 10, 10], [1, 2, 3]]})[1] == 1.0


def test_vstar_duplicate_gt_timestamps_each_count():
    # l.134: the loop runs over the GT list, so two boxes at t=3 are two IoUs (1.0 and 0.5) -> 0.75.
    q = vstar_query(gt_boxes=(("3", BOX), ("3", [0.0, 0.0, 10.0, 5.0])))
    p = GroundingPrediction(qid="s", span_s=(2.0, 6.0), extra={"boxes_by_time": {"3": list(BOX)}})
    assert evaluate([q], [p], protocol="vstar").per_query[0]["vIoU"] == pytest.approx(0.75)


def test_vstar_adapter_keeps_duplicate_timestamps(tmp_path):
    item = {"vid": "v", "domain": "Sports", "fps": 1.0, "frame_count": 10, "width": 100, "height": 100,
            "question": "q", "answer": "a", "timestamps": [2, 6],
            "bboxes": [{"timestamp": 3, "frame_index": 3, "xmin": 0, "ymin": 0, "xmax": 10, "ymax": 10},
                       {"timestamp": 3, "frame_index": 4, "xmin": 0, "ymin": 0, "xmax": 10, "ymax": 5}]}  # fmt: skip
    path = tmp_path / "v.json"
    path.write_text(json.dumps([item]))
    (q,) = load_benchmark("vstar", path)
    assert [k for k, _ in q.extra["vstar_gt_boxes"]] == ["3", "3"]


def test_vstar_item_without_gt_boxes_counts_zero():
    # l.148: mIoU = mean(ious) if ious else 0.0, and the item is appended to the means.
    qs = [vstar_query("a"), vstar_query("b", gt_boxes=())]
    ps = [GroundingPrediction(qid=q.qid, span_s=(2.0, 6.0), extra={"boxes_by_time": {"3": list(BOX)}}) for q in qs]
    s = evaluate(qs, ps, protocol="vstar").summary
    assert s["m_vIoU"] == pytest.approx(0.5) and s["AP@0.5"] == pytest.approx(0.5)


def test_vstar_empty_answer_vqa_is_skipped_but_counts_in_the_accuracy_denominator():
    # l.214: `if 'answer_vqa' in item and item['answer_vqa']` else continue; l.339 / l.399: the overall
    # accuracy divides by len(data), skipped items included.
    qs = [vstar_query("a"), vstar_query("b")]
    ps = [
        GroundingPrediction(qid="a", extra={"answer_vqa": "A ball.", "answer_temporal": "[2, 6]",
                                            "answer_spatial": {"3": BOX}, "vqa_score": 3}),  # fmt: skip
        GroundingPrediction(qid="b", extra={"answer_vqa": "", "answer_temporal": "[4, 8]"}),
    ]
    s = evaluate(qs, ps, protocol="vstar").summary
    assert s["m_tIoU"] == 1.0 and s["m_vIoU"] == 1.0 and s["num_vstar_skipped_no_answer_vqa"] == 1
    assert s["vstar_vqa_accuracy"] == 0.5 and s["vstar_VQA&Temp&Spat_chain1"] == 0.5
    assert s["domain_Sports_vqa_accuracy"] == 1.0  # per group: rated items only (l.401)


def test_vstar_string_where_answer_crashes_officially_scores_zero_here():
    # l.136-137: `"3" in "... 3 ..."` is True, then str["3"] raises TypeError outside any try.
    q = vstar_query()
    p = GroundingPrediction(qid="s", extra={"answer_temporal": "[2, 6]", "answer_spatial": "box at 3 s"})
    res = evaluate([q], [p], protocol="vstar")
    assert res.per_query[0]["vIoU"] == 0.0 and res.summary["num_crash_scored_zero"] == 1


def test_vstar_am_lgm_from_ratings():
    qs = [vstar_query("a"), vstar_query("b")]
    ps = [
        GroundingPrediction(qid="a", extra={"answer_vqa": "x", "answer_temporal": "[2, 6]", "answer_spatial": {},
                                            "answer_temporal_2": "[4, 8]", "vqa_score": 2}),  # fmt: skip
        GroundingPrediction(qid="b", extra={"answer_vqa": "y", "answer_temporal": "[4, 8]", "vqa_score": -1}),
    ]
    s = evaluate(qs, ps, protocol="vstar").summary
    # l.339: correct = score >= 2 -> 1 of 2; -1 (unparsable) counts as 0 in the average score; absent
    # chain-2 answers of a results item score 0 (l.229-233)
    acc, t1, v1, t2 = 0.5, (1 + 1 / 3) / 2, 0.0, (1 / 3 + 0) / 2
    assert s["vstar_vqa_accuracy"] == acc and s["vstar_vqa_avg_all_score"] == 1.0
    assert s["vstar_AM1"] == pytest.approx((acc + t1 + v1) / 3) and s["vstar_AM2"] == pytest.approx((acc + t2) / 3)
    assert s["vstar_LGM1"] == pytest.approx(-(math.log(1 - acc) + math.log(1 - t1)) / 3)
    assert s["vstar_mAM"] == pytest.approx((s["vstar_AM1"] + s["vstar_AM2"]) / 2)
    one = evaluate(qs[:1], ps[:1], protocol="vstar").summary  # acc 1 -> log(0): the official raises
    assert one["vstar_vqa_accuracy"] == 1.0 and one["vstar_LGM1"] is None and one["vstar_AM1"] is not None


# ------------------------------------------------------------------ V-STaR literal parser vs literal_eval


def _official_pair(text):
    try:
        value = ast.literal_eval(text)  # the test's oracle only; production code never calls it
    except Exception:  # noqa: BLE001
        return None
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(x, (int, float)) for x in value):
        return value
    return None


def test_literal_parser_matches_literal_eval_on_random_answers():
    atoms = ["4", "8", "-4", "+8", "4.", ".5", "1e3", "1_0", "0x1f", "07", "00", "True", "False", "None", "4j",
             '"4"', "(4)", "-(4)", "-(-4)", "- 4", "1__0", "0b2", "1.5e", "3-5", "[4]"]  # fmt: skip
    seps = [",", ", ", " ,", "\n,", ",\n", "  ", "", ",,", " # c\n,"]
    wraps = [("[", "]"), ("(", ")"), ("", ""), ("[(", ")]"), ("((", "))")]
    pre = ["", "  ", "\n", "\n  ", " #c\n", "\t", "\x0c", "\r\n"]
    post = ["", "\n", "\n  ", "  #c", "\n#x", ";", " x", " \n"]
    rng = random.Random(15)
    accepted = 0
    for _ in range(5000):
        items = [rng.choice(atoms) for _ in range(rng.choice([1, 2, 2, 2, 3]))]
        text = items[0] + "".join(rng.choice(seps) + it for it in items[1:]) + ("," if rng.random() < 0.3 else "")
        left, right = rng.choice(wraps)
        text = rng.choice(pre) + left + text + right + rng.choice(post)
        ours, ref = parse_number_pair(text), _official_pair(text)
        assert (ours is None) == (ref is None), text
        if ref is not None:
            accepted += 1
            assert type(ours) is type(ref) and [type(v) for v in ours] == [type(v) for v in ref] and ours == ref, text
    assert accepted > 200  # the fixture does exercise accepted answers


# ------------------------------------------------------------------ VUE-STG evaluate.py + tube.py


A, B = [0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.5, 0.25]


def test_vue_zero_area_first_box_wins_its_second():
    # tube.py l.57 appends every row; evaluate.py l.222 "first" takes slice[:1] even with zero area.
    gt = build_tube([(0, A)])
    assert compare_tubes(gt, build_tube([(0, [0.2, 0.2, 0.2, 0.4]), (100, A)]))["t_IoU"] == 0.0


def test_vue_rows_keep_file_order_within_a_second():
    gt = build_tube([(0, A)])
    pred = build_tube([(400, A), (100, B)])  # the first row of the second, not the earliest time
    assert compare_tubes(gt, pred)["v_IoU"] == pytest.approx(1.0)
    assert compare_tubes(gt, pred, "last")["v_IoU"] == pytest.approx(0.5)


def test_vue_infinite_coordinate_is_clipped():
    # tube.py l.15: max(0, min(1, v)) -> inf becomes 1.
    gt = build_tube([(0, [0.0, 0.0, 1.0, 1.0])])
    assert compare_tubes(gt, build_tube([(0, [0.0, 0.0, float("inf"), 1.0])]))["v_IoU"] == pytest.approx(1.0)


def test_vue_same_time_rows_and_policies_through_evaluate():
    q = GroundingQuery(qid="v", video="v.mp4", query="x", fps=1.0, num_frames=10, width=100, height=100,
                       span_frames=(0, 1), boxes={}, extra={"vue_rows": [[0, *A]]})  # fmt: skip
    p = GroundingPrediction(qid="v", extra={"vue_rows": [[0, *B], [0, 0.0, 0.25, 0.5, 0.5]]})
    first = evaluate([q], [p], protocol="vue_stg").per_query[0]
    union = evaluate([q], [p], protocol="vue_stg", vue_multi_boxes_policy="union").per_query[0]
    assert first["v_IoU"] == pytest.approx(0.5) and union["v_IoU"] == pytest.approx(1.0)
    assert first["3D_Recall"] == pytest.approx(0.5) and first["3D_Precision"] == pytest.approx(1.0)


def test_vue_union_area_of_overlapping_rectangles():
    assert union_area([(0, 0, 0.5, 0.5), (0.25, 0.25, 0.75, 0.75)]) == pytest.approx(0.4375)


def test_vue_group_summaries():
    q = GroundingQuery(qid="v", video="v.mp4", query="x", fps=1.0, num_frames=100, width=100, height=100,
                       span_frames=(0, 4), boxes={f: [0, 0, 50, 50] for f in range(4)})  # fmt: skip
    p = GroundingPrediction(qid="v", span_frames=(0, 4), boxes={f: [0, 0, 50, 50] for f in range(4)})
    s = evaluate([q], [p], protocol="vue_stg").summary
    # avg area 0.25 -> "10%-30%"; 100 s video -> "1-10min"; 4 GT seconds -> "3-10s"
    assert s["object_size[10%-30%]_t_IoU"] == 1.0 and s["video_duration[1-10min]_num_queries"] == 1
    assert s["gt_duration[3-10s]_v_IoU"] == pytest.approx(1.0)


def test_vue_time_bin_and_repair_flag_in_the_table():
    q = GroundingQuery(qid="v", video="v.mp4", query="x", fps=1.0, num_frames=10, width=1, height=1,
                       span_frames=(0, 1), extra={"vue_rows": [[0, *A], [900, *A]]})  # fmt: skip
    p = GroundingPrediction(qid="v", extra={"vue_rows": [[0, *A]]})
    assert evaluate([q], [p], protocol="vue_stg").per_query[0]["t_IoU"] == 0.5  # 900 ms rounds to second 1
    res = evaluate([q], [p], protocol="vue_stg", vue_step_ms=2000)  # 2 s bins: 0 and 900 ms both in bin 0
    assert res.per_query[0]["t_IoU"] == 1.0
    assert any(line.split()[:2] == ["repair", "False"] for line in res.to_table().splitlines())
