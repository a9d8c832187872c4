"""Every worked example of /work/shared/notes/metrics.md, through the public metric API."""

from __future__ import annotations

import math

import numpy as np
import pytest
from builders import box_query

from stvg_plugin.data import GroundingPrediction, GroundingQuery
from stvg_plugin.metrics import (
    evaluate,
    parse_charades_answer,
    rec_iou,
    score_query,
    tubedetr_universe,
    vstar_chain_scores,
    vstar_spatial_ious,
    vstar_summary,
    vstar_tiou,
    vue_stg_scores,
)

GT_BOX = [0.0, 0.0, 10.0, 10.0]
HALF_BOX = [0.0, 0.0, 10.0, 5.0]  # IoU 0.5 with GT_BOX
FAR_BOX = [20.0, 20.0, 30.0, 30.0]  # IoU 0


def hcstvg_query(qid: str, gt: tuple[int, int], num_frames: int = 100, offset: int = 0) -> GroundingQuery:
    """A query as the HC-STVG adapter stores it: fps = frames / 20 s, segment [0, frames - 1)."""
    return GroundingQuery(
        qid=qid,
        video=f"{qid}.mp4",
        query="the man walks",
        fps=num_frames / 20,
        num_frames=num_frames,
        width=640,
        height=360,
        span_frames=gt,
        boxes={f: list(GT_BOX) for f in range(*gt)},
        extra={"segment": [0, num_frames - 1], "tubedetr_frame_offset": offset},
    )


def pred(qid: str, span, boxes: dict, **kw) -> GroundingPrediction:
    return GroundingPrediction(qid=qid, span_frames=span, boxes=boxes, **kw)


# ----------------------------------------------------------------------------- TubeDETR (§1)


def test_hcstvg_universe_is_every_fifth_frame_without_the_last():
    qi, fr = tubedetr_universe(np.array([500 / 20]), np.array([0]), np.array([499]))
    assert fr.tolist() == list(range(0, 500, 5))
    qi, fr = tubedetr_universe(np.array([100 / 20]), np.array([0]), np.array([99]))
    assert fr.tolist() == list(range(99))


def test_vidstg_universe_and_cap():
    _, fr = tubedetr_universe(np.array([30.0]), np.array([0]), np.array([60]))
    assert fr.tolist() == list(range(0, 60, 6))
    _, fr = tubedetr_universe(np.array([30.0]), np.array([0]), np.array([3000]))  # 500 kept -> cap 200
    kept = list(range(0, 3000, 6))
    assert fr.tolist() == [kept[(j * len(kept)) // 200] for j in range(200)]


@pytest.mark.parametrize("offset", [0, 1])
def test_hcstvg_example(offset):
    q = hcstvg_query("a", (10 - offset, 20 - offset), offset=offset)
    boxes = {f: (HALF_BOX if f < 15 else GT_BOX) for f in range(10, 25)}
    row = score_query(q, pred("a", (15, 25), boxes))
    assert row["tIoU"] == pytest.approx(1 / 3)
    assert row["vIoU"] == pytest.approx(5 / 15)
    assert row["gt_vIoU"] == pytest.approx(0.75)
    assert (row["vIoU@0.3"], row["vIoU@0.5"]) == (1.0, 0.0)
    assert row["gt_span"] == [10, 20]


def test_threshold_edge_is_strict():
    q = hcstvg_query("a", (10, 20))
    boxes = {f: (GT_BOX if f < 13 else FAR_BOX) for f in range(10, 20)}
    row = score_query(q, pred("a", (10, 20), boxes))
    assert row["vIoU"] == 0.3
    assert row["vIoU@0.3"] == 0.0
    assert row["tIoU"] == 1.0


def test_no_overlap():
    q = hcstvg_query("a", (10, 20))
    boxes = {f: GT_BOX for f in range(0, 99)}
    row = score_query(q, pred("a", (40, 50), boxes))
    assert (row["tIoU"], row["vIoU"], row["gt_vIoU"]) == (0.0, 0.0, 1.0)


def test_vidstg_example_with_qtype_summary():
    q = box_query("v", (12, 36), GT_BOX, fps=30.0, num_frames=90, qtype="declarative", extra={"segment": [0, 60]})
    p = pred("v", (18, 48), {f: list(GT_BOX) for f in range(0, 90)})
    res = evaluate([q], [p])
    row = res.per_query[0]
    assert row["tIoU"] == pytest.approx(0.5)
    assert row["vIoU"] == pytest.approx(0.5)
    assert (row["vIoU@0.3"], row["vIoU@0.5"]) == (1.0, 0.0)
    assert res.summary["declarative_m_vIoU"] == pytest.approx(0.5)
    assert res.summary["declarative_vIoU@0.5"] == 0.0
    assert res.summary["declarative_num_queries"] == 1


def test_seconds_prediction_maps_onto_sampled_frames():
    q = hcstvg_query("a", (10, 20))  # fps 5, universe = every frame 0..98
    row = score_query(q, GroundingPrediction(qid="a", span_s=(3.0, 4.9), boxes={}))
    assert row["pred_span"] == [15, 25]  # first f/fps >= 3.0 is 15; last f/fps <= 4.9 is 24
    assert row["tIoU"] == pytest.approx(1 / 3)


# ----------------------------------------------------------------------------- cross-evaluator table (§2)


def _cross_case(protocol: str, missing_frame: int | None = None, **kw):
    q = hcstvg_query("x", (9, 19), num_frames=100)  # GT frames 9..18 (0-based)
    boxes = {f: list(GT_BOX) for f in range(14, 24) if f != missing_frame}  # prediction 14..23
    return score_query(q, pred("x", (14, 24), boxes), protocol=protocol, **kw)


@pytest.mark.parametrize(
    "protocol,missing,tiou,viou,at03",
    [
        ("official_hcstvg", None, 1 / 3, 1 / 3, 1.0),
        ("stcat", None, 4 / 15, 4 / 15, 0.0),
        ("cg_stvg", 15, 4 / 15, 3 / 15, 0.0),
        ("llava_next_stvg", None, 4 / 15, 5 / 16, 1.0),
    ],
)
def test_cross_evaluator_table(protocol, missing, tiou, viou, at03):
    row = _cross_case(protocol, missing)
    assert row["tIoU"] == pytest.approx(tiou)
    assert row["vIoU"] == pytest.approx(viou)
    assert row["vIoU@0.3"] == at03


def test_cross_table_tubedetr_row():
    # TubeDETR sees the same physical tube on its 1-based-as-0-based axis: GT [10, 20), pred [15, 25).
    q = hcstvg_query("x", (9, 19), offset=1)
    row = score_query(q, pred("x", (15, 25), {f: list(GT_BOX) for f in range(15, 25)}))
    assert (row["tIoU"], row["vIoU"], row["vIoU@0.3"]) == (pytest.approx(1 / 3), pytest.approx(1 / 3), 1.0)


def test_official_hcstvg_missing_video_scores_zero():
    res = evaluate([hcstvg_query("x", (9, 19))], [], protocol="official_hcstvg")
    assert res.summary["m_tIoU"] == 0.0 and res.summary["num_missing"] == 1


# ----------------------------------------------------------------------------- V-STaR (§3)


def test_vstar_temporal():
    assert vstar_tiou([2, 6], [4, 8]) == pytest.approx(1 / 3)
    assert vstar_tiou([2, 6], "[4, 8]") == pytest.approx(1 / 3)
    assert vstar_tiou([2, 6], []) == 0.0
    assert vstar_tiou([2, 6], "no idea") == 0.0
    assert vstar_tiou([2, 6], [1, 2, 3]) == 0.0


def test_vstar_spatial_and_exact_string_keys():
    gt = {"3": GT_BOX, "4": GT_BOX, "5": GT_BOX}
    p = {"3": [0, 0, 10, 5], "4": [[0, 0, 10, 10], [50, 50, 60, 60]]}
    assert vstar_spatial_ious(gt, p) == pytest.approx([0.5, 1.0, 0.0])
    assert vstar_spatial_ious(gt, {"3.0": GT_BOX}) == [0.0, 0.0, 0.0]


def test_vstar_protocol_through_evaluate():
    q = GroundingQuery(
        qid="s",
        video="s.mp4",
        query="where",
        fps=1.0,
        num_frames=10,
        span_s=(2.0, 6.0),
        boxes={3: GT_BOX, 4: GT_BOX, 5: GT_BOX},
    )
    p = GroundingPrediction(
        qid="s",
        span_s=(4.0, 8.0),
        extra={"boxes_by_time": {"3": [0, 0, 10, 5], "4": [[0, 0, 10, 10], [50, 50, 60, 60]]}},
    )
    s = evaluate([q], [p], protocol="vstar").summary
    assert s["m_tIoU"] == pytest.approx(1 / 3) and s["m_vIoU"] == pytest.approx(0.5)
    expected_ap = {0.1: 2 / 3, 0.3: 2 / 3, 0.5: 2 / 3, 0.7: 1 / 3, 0.9: 1 / 3}
    for m, v in expected_ap.items():
        assert s[f"AP@{m}"] == pytest.approx(v)
    assert (s["R1@0.3"], s["R1@0.5"]) == (1.0, 0.0)


def test_vstar_am_lgm():
    c1 = vstar_chain_scores(0.5, 0.3, 0.2)
    assert c1["AM"] == pytest.approx(1 / 3) and c1["LGM"] == pytest.approx(0.42432, abs=1e-5)
    s = vstar_summary(0.5, (0.3, 0.2), (0.4, 0.1))
    assert s["AM1"] == s["AM2"] == pytest.approx(1 / 3) and s["mAM"] == pytest.approx(1 / 3)
    assert s["LGM2"] == pytest.approx(0.43644, abs=1e-5) and s["mLGM"] == pytest.approx(0.43038, abs=1e-5)
    assert vstar_chain_scores(1.0, 0.2, 0.2)["LGM"] == math.inf


# ----------------------------------------------------------------------------- Charades-STA (§4)

CHARADES = [
    ("The event happens in the 24.0 - 30.0 seconds.", (24.3, 30.4), 0.890625),
    ("It starts at 10 and ends at 20.", (10.0, 20.0), 0.0),
    ("from 00:05 to 00:09", (5.0, 9.0), 1.0),
    ("30.0 - 24.0", (24.0, 30.0), 1.0),
    ("I cannot tell.", (1.0, 2.0), 0.0),
]


def test_charades_parser_quirks():
    assert parse_charades_answer(CHARADES[0][0]) == (24.0, 30.0)
    assert parse_charades_answer("It starts at 10 and ends at 20.") is None  # '.' does not split sentences
    assert parse_charades_answer("It starts at 10! It ends at 20") == (10.0, 20.0)  # first number per sentence
    assert parse_charades_answer("from 00:05 to 00:09") == (5.0, 9.0)
    assert parse_charades_answer("30.0 - 24.0") == (24.0, 30.0)
    assert parse_charades_answer("from 3 to 7 s, then 8 to 9") == (3.0, 7.0)  # first pair only
    # "to" inside a word becomes "-": "tomorrow" glues 5 and the next number into a range
    assert parse_charades_answer("5tomorrow") is None and parse_charades_answer("5to9") == (5.0, 9.0)
    assert parse_charades_answer(None) is None


@pytest.mark.parametrize("lmms_compat", [False, True])
def test_charades_example(lmms_compat):
    qs = [
        GroundingQuery(
            qid=f"c{i}", video=f"v{i}.mp4", query=f"cap {i}", task="tvg", fps=30.0, num_frames=1200, span_s=gt
        )
        for i, (_, gt, _) in enumerate(CHARADES)
    ]
    ps = [GroundingPrediction(qid=f"c{i}", raw_text=text) for i, (text, _, _) in enumerate(CHARADES)]
    res = evaluate(qs, ps, protocol="auto", lmms_compat=lmms_compat)
    assert [r["tIoU"] for r in res.per_query] == pytest.approx([iou for *_, iou in CHARADES])
    s = res.summary
    assert s["protocol"] == "tvg"
    assert (s["R1@0.3_percent"], s["R1@0.5_percent"], s["R1@0.7_percent"]) == pytest.approx((60, 60, 60))
    assert s["mIoU_percent"] == pytest.approx(57.8125)
    assert s["mIoU"] == pytest.approx(0.578125)
    assert s["num_parse_failed"] == 2


def test_charades_lmms_duplicate_keys_count_once():
    q = dict(video="v.mp4", query="cap", task="tvg", fps=30.0, num_frames=900, span_s=(5.0, 9.0))
    qs = [GroundingQuery(qid="a", **q), GroundingQuery(qid="b", **q)]
    ps = [GroundingPrediction(qid="a", raw_text="5 - 9"), GroundingPrediction(qid="b", raw_text="nothing")]
    plain = evaluate(qs, ps, protocol="tvg").summary
    merged = evaluate(qs, ps, protocol="tvg", lmms_compat=True).summary
    assert plain["mIoU"] == 0.5
    assert merged["mIoU"] == 0.0  # lmms-eval's dict keeps the last answer for the shared key
    assert merged["num_merged_duplicate_keys"] == 1


# ----------------------------------------------------------------------------- VUE-STG (§5)


def test_vue_stg_example():
    gt = [(t, (0, 0, 0.5, 0.5)) for t in range(4)]
    pr = [(2.4, (0, 0, 0.5, 0.5)), (2.6, (0, 0, 0.5, 0.25)), (4.0, (0.5, 0.5, 1, 1)), (5.0, (0.6, 0.6, 1.2, 0.9))]
    s = vue_stg_scores(gt, pr)
    expected = {
        "t_IoU": 2 / 6,
        "t_Recall": 0.5,
        "t_Precision": 0.5,
        "v_IoU": 0.25,
        "v_Recall": 0.375,
        "v_Precision": 0.375,
        "v_IoU_Int": 0.75,
        "3D_IoU": 0.2737,
    }
    for k, v in expected.items():
        assert s[k] == pytest.approx(v, abs=1e-4), k
    empty = vue_stg_scores(gt, [])
    assert (empty["t_IoU"], empty["t_Precision"], empty["v_IoU"], empty["v_IoU_Int"]) == (0.0, None, 0.0, None)


def test_vue_stg_rounding_and_none_skipping_summary():
    assert vue_stg_scores([(1.499, (0, 0, 1, 1))], [(1.0, (0, 0, 1, 1))])["t_IoU"] == 1.0
    assert vue_stg_scores([(1.5, (0, 0, 1, 1))], [(2.0, (0, 0, 1, 1))])["t_IoU"] == 1.0

    def mk(qid):
        return GroundingQuery(
            qid=qid,
            video="v.mp4",
            query="q",
            fps=10.0,
            num_frames=100,
            width=100,
            height=100,
            span_frames=(0, 40),
            boxes={f: [0, 0, 50, 50] for f in (0, 10, 20, 30)},
        )

    qs = [mk("hit"), mk("empty")]
    ps = [GroundingPrediction(qid="hit", span_frames=(0, 40), boxes={20: [0, 0, 50, 50]})]
    s = evaluate(qs, ps, protocol="vue_stg").summary
    assert s["v_IoU_Int"] == pytest.approx(1.0)  # the empty query (None) is skipped, not counted as 0
    assert s["t_IoU"] == pytest.approx(0.125)  # (1/4 + 0) / 2


# ----------------------------------------------------------------------------- RefCOCO (§6)


def test_refcoco_example():
    # GT xywh (0, 32, 80, 80) on a 640x480 image; the nominal-0.5 answer is 0.4999... in floats.
    qs = [
        GroundingQuery(
            qid="r0",
            video="img0.jpg",
            query="left man",
            task="rec",
            width=640,
            height=480,
            boxes={0: [0.0, 32.0, 80.0, 112.0]},
        ),
        GroundingQuery(
            qid="r1", video="img1.jpg", query="dog", task="rec", width=1, height=1, boxes={0: [0.0, 0.0, 10.0, 10.0]}
        ),
        GroundingQuery(
            qid="r2", video="img2.jpg", query="cat", task="rec", width=1, height=1, boxes={0: [0.0, 0.0, 10.0, 10.0]}
        ),
    ]
    ps = [
        GroundingPrediction(qid="r0", raw_text="The box is [0.0, 0.06666666666666667, 0.125, 0.15]."),
        GroundingPrediction(qid="r1", boxes={0: [5.5, 0.0, 11.5, 10.0]}),  # IoU 45/115 = 9/23
        GroundingPrediction(qid="r2", raw_text="no box here"),
    ]
    res = evaluate(qs, ps, protocol="auto")
    ious = [r["IoU"] for r in res.per_query]
    assert ious[0] < 0.5 and ious[0] == pytest.approx(0.5)
    assert ious[1] == pytest.approx(9 / 23) and ious[2] == 0.0
    s = res.summary
    assert s["mIoU"] == pytest.approx(0.2971, abs=1e-4)
    assert s["ACC@0.5"] == 0.0 and s["ACC@0.3"] == pytest.approx(2 / 3)
    assert s["Center_ACC"] == pytest.approx(2 / 3)
    assert rec_iou([0, 0, 1, 1], [0, 0, 0, 0]) == 0.0
