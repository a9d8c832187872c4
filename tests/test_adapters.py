"""Native benchmark annotations -> unified queries: exact values, round trips, and hostile input.

Every fixture is written by the test in the benchmark's own native layout, so the expected values
below are hand-derived from the documented conventions (docs/FORMATS.md), not from the code.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stvg_plugin.adapters import (
    BENCHMARKS,
    BenchmarkError,
    SkippedEntry,
    default_protocol,
    duration_bucket,
    load_benchmark,
    write_charades_txt,
    write_hcstvg,
    write_vidstg,
)
from stvg_plugin.data import AnnotationError, GroundingQuery, seconds_to_span, write_queries

# --------------------------------------------------------------------------- native fixtures

HC_KEY = "55_vfjywN5CN0Y.mp4"
HC_V1 = {
    HC_KEY: {
        "bbox": [[10, 20, 30, 40], [11, 21, 30, 40], [12, 22, 30, 40]],
        "st_frame": 5,
        "st_time": 0.16,
        "ed_time": 0.24,
        "img_num": 500,
        "caption": "The man in red walks to the door.",
        "width": 640,
        "height": 360,
    }
}
VID = "2401075277"


def _vidstg_entry(**over):
    entry = {
        "vid": VID,
        "frame_count": 120,
        "fps": 30.0,
        "width": 640,
        "height": 480,
        "subject/objects": [{"tid": 1, "category": "child"}, {"tid": 2, "category": "dog"}],
        "used_segment": {"begin_fid": 0, "end_fid": 60},
        "used_relation": {"subject_tid": 1, "object_tid": 2, "predicate": "chase", "begin_fid": 12, "end_fid": 36},
        "temporal_gt": {"begin_fid": 12, "end_fid": 36},
        "captions": [{"description": "a child in red chases a dog.", "type": "child", "target_id": 1}],
        "questions": [
            {"description": "who chases the dog?", "type": "child", "target_id": 1},
            {"description": "what is chased by the child?", "type": "dog", "target_id": 2},
        ],
    }
    entry.update(over)
    return entry


def _track_box(tid: int, f: int) -> list[int]:
    """xyxy of target ``tid`` at frame ``f`` (integers keep xywh <-> xyxy exact)."""
    return [f + tid, 10 * tid, f + tid + 20, 10 * tid + 30]


def _tubedetr_trajectories(frames=range(0, 100)):
    return {VID: {str(t): {str(f): {"bbox": _xywh(_track_box(t, f))} for f in frames} for t in (1, 2)}}


def _xywh(b):
    return [b[0], b[1], b[2] - b[0], b[3] - b[1]]


def _vidor_annotation(frames=100):
    traj = [
        [
            {"tid": t, "bbox": dict(zip(("xmin", "ymin", "xmax", "ymax"), _track_box(t, f))), "generated": 0}
            for t in (1, 2)
        ]
        for f in range(frames)
    ]
    return {"video_id": VID, "video_path": f"0000/{VID}.mp4", "frame_count": 120, "fps": 30.0, "trajectories": traj}


VSTAR_ITEM = {
    "vid": "vs001",
    "domain": "Sports",
    "fps": 30.0,
    "width": 1280,
    "height": 720,
    "frame_count": 2700,
    "question": "What does the dog catch?",
    "answer": "A frisbee.",
    "chain": "<think>...</think>",
    "object": "the dog",
    "temporal_question": "When does the dog catch the frisbee?",
    "timestamps": [3, 5],
    "spatial_question": "Where is the dog when it catches the frisbee?",
    "spatial_question_2": "Where is the dog?",
    "bboxes": [
        {"timestamp": 3, "frame_index": 90, "xmin": 1, "ymin": 2, "xmax": 30, "ymax": 40},
        {"timestamp": 4, "frame_index": 120, "xmin": 5, "ymin": 6, "xmax": 35, "ymax": 46},
    ],
}

CHARADES_TXT = "AO8RW 0.0 6.9##a person is putting a book on a shelf.\nY6R7T 24.3 30.4##person turn a light on.\n"


def _write(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- registry


def test_registry_names_and_default_protocols():
    assert BENCHMARKS == ("hcstvg_v1", "hcstvg_v2", "vidstg", "charades_sta", "vstar", "unified")
    assert [default_protocol(n) for n in BENCHMARKS] == ["tubedetr"] * 3 + ["tvg", "vstar", "tubedetr"]
    assert default_protocol("HCSTVG-v1") == "tubedetr"
    with pytest.raises(BenchmarkError, match="unknown benchmark 'kinetics'"):
        load_benchmark("kinetics", "x.json")


# --------------------------------------------------------------------------- HC-STVG


def test_hcstvg_v1_exact_unified_values(tmp_path):
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / HC_KEY).write_bytes(b"")
    [q] = load_benchmark("hcstvg_v1", _write(tmp_path / "test.json", HC_V1), video_root=tmp_path / "videos")
    assert q.qid == HC_KEY and q.video == str(tmp_path / "videos" / HC_KEY) and q.video_id == "55_vfjywN5CN0Y"
    assert q.query == "The man in red walks to the door." and q.task == "stvg"
    assert (q.fps, q.num_frames, q.width, q.height) == (25.0, 500, 640, 360)
    assert q.span_frames == (4, 7) and q.span_s == (4 / 25, 7 / 25)
    assert q.boxes == {4: [10, 20, 40, 60], 5: [11, 21, 41, 61], 6: [12, 22, 42, 62]}
    assert q.extra == {
        "segment": [0, 499],
        "tubedetr_frame_offset": 1,
        "st_frame": 5,
        "hcstvg_version": 1,
        "st_time": 0.16,
        "ed_time": 0.24,
    }


def test_hcstvg_without_video_root_keeps_the_key(tmp_path):
    [q] = load_benchmark("hcstvg_v1", _write(tmp_path / "test.json", HC_V1))
    assert q.video == HC_KEY


def test_hcstvg_v2_fields_video_parts_and_search(tmp_path):
    root = tmp_path / "v2videos"
    (root / "part_3").mkdir(parents=True)
    (root / "part_3" / "abc.mp4").write_bytes(b"")
    (root / "deep" / "x").mkdir(parents=True)
    (root / "deep" / "x" / "def.mp4").write_bytes(b"")
    _write(root / "video_part.json", {"part_3": ["abc.mp4"]})
    v2 = {
        "abc.mp4": {
            "img_num": 300,
            "img_size": [360, 640],
            "English": "The woman sits.",
            "st_frame": 1,
            "bbox": [[0, 0, 5, 5]],
            "st_time": 0.0,
            "ed_time": 0.0,
        },
        # CG-STVG re-export: v2 data with v1 field names
        "def.mp4": {
            "img_num": 200,
            "width": 320,
            "height": 240,
            "caption": "The boy jumps.",
            "st_frame": 200,
            "bbox": [[1, 2, 3, 4]],
        },
    }
    a, b = load_benchmark("hcstvg_v2", _write(tmp_path / "valv2.json", v2), video_root=root)
    assert a.video == str(root / "part_3" / "abc.mp4") and (a.width, a.height) == (640, 360)
    assert a.query == "The woman sits." and a.span_frames == (0, 1) and a.fps == 15.0
    assert a.extra["hcstvg_version"] == 2 and a.extra["segment"] == [0, 299]
    assert b.video == str(root / "deep" / "x" / "def.mp4") and (b.width, b.height) == (320, 240)
    assert b.span_frames == (199, 200) and b.boxes == {199: [1, 2, 4, 6]} and "st_time" not in b.extra


@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        ({"bbox": [[1, 2, 3]]}, "bbox[0] must have 4 numbers"),
        ({"bbox": []}, "bbox is empty"),
        ({"st_frame": -1}, "st_frame must be >= 0"),
        ({"st_frame": "five"}, "st_frame must be a number"),
        ({"img_num": None}, "missing field 'img_num'"),
        ({"caption": None}, "missing field 'caption' or 'English'"),
        ({"bbox": [[1, 2, 3, None]]}, "bbox[0] must be a number"),
        ({"img_size": [360]}, "img_size must be [H, W]"),
    ],
)
def test_hcstvg_bad_entries_name_file_and_key(tmp_path, patch, needle):
    path = _write(tmp_path / "bad.json", {HC_KEY: {**HC_V1[HC_KEY], **patch}})
    with pytest.raises(AnnotationError) as info:
        load_benchmark("hcstvg_v1", path)
    assert needle in str(info.value) and str(path) in str(info.value) and f"[entry {HC_KEY}]" in str(info.value)
    assert info.value.entry == HC_KEY


def test_hcstvg_on_error_skip_records_named_skips(tmp_path):
    doc = {**HC_V1, "bad.mp4": {**HC_V1[HC_KEY], "bbox": "nope"}, "worse.mp4": 7}
    path = _write(tmp_path / "mixed.json", doc)
    skipped: list = []
    queries = load_benchmark("hcstvg_v1", path, on_error="skip", skipped=skipped)
    assert [q.qid for q in queries] == [HC_KEY]
    assert [(s.entry, s.path) for s in skipped] == [("bad.mp4", str(path)), ("worse.mp4", str(path))]
    assert "bbox must be a JSON list" in skipped[0].reason and "entry must be a JSON object" in skipped[1].reason
    assert all(isinstance(s, SkippedEntry) for s in skipped)


def test_hcstvg_top_level_and_file_errors(tmp_path):
    with pytest.raises(AnnotationError, match="expected a JSON object keyed by video file name"):
        load_benchmark("hcstvg_v1", _write(tmp_path / "list.json", [1, 2]))
    broken = tmp_path / "broken.json"
    broken.write_text('{"a": [1, 2', encoding="utf-8")
    with pytest.raises(AnnotationError, match=r"broken\.json: invalid JSON"):
        load_benchmark("hcstvg_v1", broken)
    with pytest.raises(AnnotationError, match="file not found"):
        load_benchmark("hcstvg_v1", tmp_path / "missing.json")


def test_hcstvg_writer_reproduces_native_file(tmp_path):
    native = _write(tmp_path / "test.json", HC_V1)
    write_hcstvg(tmp_path / "again.json", load_benchmark("hcstvg_v1", native), version=1)
    assert json.loads((tmp_path / "again.json").read_text()) == HC_V1


def _synthetic_query(qid: str, video: Path, start: int, length: int, fps: float, version: int) -> GroundingQuery:
    num_frames = 100
    return GroundingQuery(
        qid=qid,
        video=str(video),
        query=f"the red circle {qid}",
        fps=fps,
        num_frames=num_frames,
        width=160,
        height=120,
        span_frames=(start, start + length),
        span_s=(start / fps, (start + length) / fps),
        boxes={f: [f, 2.0, f + 10.5, 30.0] for f in range(start, start + length)},
        video_id=video.stem,
        extra={
            "segment": [0, num_frames - 1],
            "tubedetr_frame_offset": 1,
            "st_frame": start + 1,
            "hcstvg_version": version,
            "st_time": start / fps,
            "ed_time": (start + length - 1) / fps,
        },
    )


@pytest.mark.parametrize("version", [1, 2])
def test_hcstvg_round_trip_several_queries_per_video(tmp_path, version):
    video = tmp_path / "video_0000.mp4"
    video.write_bytes(b"")
    queries = [
        _synthetic_query("video_0000_q0", video, 3, 7, fps=10.0, version=version),  # 10 s clip: fps written
        _synthetic_query("video_0000_q1", video, 0, 1, fps=5.0, version=version),  # 20 s clip: fps implied
    ]
    out = tmp_path / f"hcstvg_v{version}.json"
    write_hcstvg(out, queries, version=version)
    raw = json.loads(out.read_text())
    assert raw["video_0000_q0"]["video_file"] == "video_0000.mp4" and raw["video_0000_q0"]["fps"] == 10.0
    assert "fps" not in raw["video_0000_q1"] and raw["video_0000_q1"]["st_frame"] == 1
    assert ("English" in raw["video_0000_q0"]) == (version == 2)
    assert load_benchmark(f"hcstvg_v{version}", out, video_root=tmp_path) == queries


def test_hcstvg_writer_requires_a_box_on_every_span_frame(tmp_path):
    q = _synthetic_query("q", tmp_path / "v.mp4", 3, 4, fps=5.0, version=1)
    del q.boxes[5]
    with pytest.raises(AnnotationError, match=r"\[entry q\]: no box on span frame\(s\) \[5\]"):
        write_hcstvg(tmp_path / "out.json", [q])
    assert not (tmp_path / "out.json").exists()


# --------------------------------------------------------------------------- VidSTG


def _expected_vidstg() -> list[tuple]:
    return [
        (f"{VID}_0_d0", "declarative", "a child in red chases a dog.", 1),
        (f"{VID}_0_i0", "interrogative", "who chases the dog?", 1),
        (f"{VID}_0_i1", "interrogative", "what is chased by the child?", 2),
    ]


def test_vidstg_tubedetr_trajectories_exact_values(tmp_path):
    ann = _write(tmp_path / "test_annotations.json", [_vidstg_entry()])
    traj = _write(tmp_path / "trajectories.json", _tubedetr_trajectories())
    queries = load_benchmark("vidstg", ann, trajectories=traj)
    got = [(q.qid, q.qtype, q.query, q.extra["target_id"]) for q in queries]
    assert got == _expected_vidstg()
    for q in queries:
        tid = q.extra["target_id"]
        assert q.span_frames == (12, 36) and q.span_s == (0.4, 1.2) and q.extra["segment"] == [0, 60]
        assert (q.fps, q.num_frames, q.width, q.height, q.video_id) == (30.0, 120, 640, 480, VID)
        assert q.boxes == {f: _track_box(tid, f) for f in range(12, 36)}
        assert q.video == f"{VID}.mp4" and q.task == "stvg"


def test_vidstg_vidor_folder_matches_tubedetr_source_and_gt_not_clipped(tmp_path):
    entry = _vidstg_entry(temporal_gt={"begin_fid": 50, "end_fid": 70})  # ends past used_segment [0, 60)
    ann = _write(tmp_path / "val_annotations.json", [entry])
    (tmp_path / "vidor" / "0000").mkdir(parents=True)
    _write(tmp_path / "vidor" / "0000" / f"{VID}.json", _vidor_annotation())
    (tmp_path / "videos" / "0000").mkdir(parents=True)
    (tmp_path / "videos" / "0000" / f"{VID}.mp4").write_bytes(b"")
    from_vidor = load_benchmark("vidstg", ann, video_root=tmp_path / "videos", vidor_dir=tmp_path / "vidor")
    traj = _write(tmp_path / "trajectories.json", _tubedetr_trajectories())
    from_tubedetr = load_benchmark("vidstg", ann, video_root=tmp_path / "videos", trajectories=traj)
    assert from_vidor == from_tubedetr
    q = from_vidor[0]
    assert q.span_frames == (50, 70) and q.extra["segment"] == [0, 60]
    assert q.video == str(tmp_path / "videos" / "0000" / f"{VID}.mp4")
    assert sorted(q.boxes) == list(range(50, 70))


def test_vidstg_errors_name_the_entry(tmp_path):
    traj = _write(tmp_path / "trajectories.json", _tubedetr_trajectories())
    entries = [
        _vidstg_entry(),
        _vidstg_entry(temporal_gt={"begin_fid": 30, "end_fid": 10}),
        _vidstg_entry(captions=[{"description": "x", "target_id": 9}]),
    ]
    ann = _write(tmp_path / "ann.json", entries)
    with pytest.raises(AnnotationError, match=r"\[entry index 1\]: temporal_gt must satisfy"):
        load_benchmark("vidstg", ann, trajectories=traj)
    skipped: list = []
    queries = load_benchmark("vidstg", ann, trajectories=traj, on_error="skip", skipped=skipped)
    assert len(queries) == 3 and [s.entry for s in skipped] == ["index 1", "index 2"]
    assert "target_id 9 has no trajectory" in skipped[1].reason
    with pytest.raises(BenchmarkError, match="exactly one box source"):
        load_benchmark("vidstg", ann)


def test_vidstg_round_trip(tmp_path):
    queries = []
    for i, (qtype, tid, gt) in enumerate([("declarative", 1, (12, 36)), ("interrogative", 2, (40, 44))]):
        queries.append(
            GroundingQuery(
                qid=f"{VID}_{i}_{qtype[0]}0",
                video=f"{VID}.mp4",
                query=f"sentence {i}",
                fps=30.0,
                num_frames=120,
                width=640,
                height=480,
                span_frames=gt,
                span_s=(gt[0] / 30.0, gt[1] / 30.0),
                boxes={f: [float(v) for v in _track_box(tid, f)] for f in range(*gt)},
                qtype=qtype,
                video_id=VID,
                extra={"segment": [0, 60], "target_id": tid, "entry_index": i},
            )
        )
    write_vidstg(tmp_path / "ann.json", queries, tmp_path / "traj.json")
    assert load_benchmark("vidstg", tmp_path / "ann.json", trajectories=tmp_path / "traj.json") == queries


# --------------------------------------------------------------------------- Charades-STA


def test_charades_native_text_exact_values(tmp_path):
    path = tmp_path / "charades_sta_test.txt"
    path.write_text(CHARADES_TXT, encoding="utf-8")
    a, b = load_benchmark("charades_sta", path)
    assert (a.qid, a.video, a.video_id, a.task) == ("AO8RW_0", "AO8RW.mp4", "AO8RW", "tvg")
    assert a.query == "a person is putting a book on a shelf." and a.span_s == (0.0, 6.9)
    assert a.span_frames is None and (a.fps, a.num_frames, a.width, a.height) == (0.0, 0, 0, 0)
    assert (b.qid, b.span_s, b.query) == ("Y6R7T_1", (24.3, 30.4), "person turn a light on.")


@pytest.mark.parametrize("layout", ["json", "jsonl"])
def test_charades_lmms_eval_json_and_jsonl(tmp_path, layout):
    rows = [
        {"video": "AO8RW.mp4", "caption": "a person opens a door.", "timestamp": "[24.3, 30.4]"},
        {"video": "Y6R7T.mp4", "caption": "person sits.", "timestamp": [1, 2.5]},
    ]
    path = tmp_path / f"charades.{layout}"
    path.write_text(json.dumps(rows) if layout == "json" else "\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    a, b = load_benchmark("charades_sta", path, video_root=tmp_path)
    assert (a.qid, a.span_s, a.video) == ("AO8RW_0", (24.3, 30.4), str(tmp_path / "AO8RW.mp4"))
    assert (b.qid, b.span_s, b.query) == ("Y6R7T_1", (1.0, 2.5), "person sits.")


def test_charades_bad_line_named_and_skippable(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text(CHARADES_TXT + "\nBROKEN line without marker\nZZZ 5 2##reversed\n", encoding="utf-8")
    with pytest.raises(AnnotationError, match=r"\[entry line 4\]: not a Charades-STA line: expected '<video_id> <start_s> <end_s>##"):
        load_benchmark("charades_sta", path)
    skipped: list = []
    assert len(load_benchmark("charades_sta", path, on_error="skip", skipped=skipped)) == 2
    assert [s.entry for s in skipped] == ["line 4", "line 5"] and "end 2.0 < start 5.0" in skipped[1].reason


def test_charades_round_trip(tmp_path):
    queries = [
        GroundingQuery(
            qid=f"v{i}_{i}",
            video=f"v{i}.mp4",
            query=f"person does thing {i}.",
            task="tvg",
            span_s=(0.1 * i, 1.0 / 3 + i),
            video_id=f"v{i}",
        )
        for i in range(3)
    ]
    write_charades_txt(tmp_path / "out.txt", queries)
    assert load_benchmark("charades_sta", tmp_path / "out.txt") == queries


def test_charades_probe_reads_a_real_video(tmp_path):
    video_mod = pytest.importorskip("stvg_plugin.video")
    frames = (np.full((48, 64, 3), 12 * i, dtype=np.uint8) for i in range(20))
    video_mod.write_video(tmp_path / "AO8RW.mp4", frames, fps=10.0, threads=1)
    path = tmp_path / "c.txt"
    path.write_text("AO8RW 0.5 1.2##a person waves.\nMISSING 0 1##nobody.\n", encoding="utf-8")
    skipped: list = []
    [q] = load_benchmark("charades_sta", path, video_root=tmp_path, probe=True, on_error="skip", skipped=skipped)
    assert (q.fps, q.num_frames, q.width, q.height) == (10.0, 20, 64, 48)
    assert q.span_frames == (5, 13) and seconds_to_span(0.5, 1.2, 10.0, 20).as_list() == [5, 13]
    assert [s.entry for s in skipped] == ["line 2"] and "cannot probe video" in skipped[0].reason


# --------------------------------------------------------------------------- V-STaR


def test_vstar_current_format_exact_values(tmp_path):
    [q] = load_benchmark("vstar", _write(tmp_path / "V_STaR_test.json", [VSTAR_ITEM]))
    assert (q.qid, q.video, q.video_id, q.task) == ("vs001_0", "vs001.mp4", "vs001", "stvg")
    assert q.query == "When does the dog catch the frisbee?"
    assert q.span_s == (3.0, 5.0) and q.span_frames == (90, 151)
    assert q.boxes == {90: [1, 2, 30, 40], 120: [5, 6, 35, 46]}
    assert q.extra["box_timestamps"] == {"90": 3, "120": 4} and isinstance(q.extra["box_timestamps"]["90"], int)
    assert q.extra["boxes_by_time"] == {"3": [1, 2, 30, 40], "4": [5, 6, 35, 46]}
    assert q.extra["domain"] == "Sports" and q.extra["duration_bucket"] == "Medium"
    for name in (
        "question",
        "answer",
        "chain",
        "object",
        "temporal_question",
        "spatial_question",
        "spatial_question_2",
    ):
        assert q.extra[name] == VSTAR_ITEM[name]


def test_vstar_old_bbox_format_matches_current(tmp_path):
    old = {
        **VSTAR_ITEM,
        "bboxes": [
            {"3_90": {"xmin": 1, "ymin": 2, "xmax": 30, "ymax": 40}},
            {"4_120": {"xmin": 5, "ymin": 6, "xmax": 35, "ymax": 46}},
        ],
    }
    [q] = load_benchmark("vstar", _write(tmp_path / "old.json", [old]))
    assert q.boxes == {90: [1, 2, 30, 40], 120: [5, 6, 35, 46]}
    assert {k: str(v) for k, v in q.extra["box_timestamps"].items()} == {"90": "3", "120": "4"}
    assert q.extra["boxes_by_time"] == {"3": [1, 2, 30, 40], "4": [5, 6, 35, 46]}


def test_vstar_duration_buckets_and_answer_vqa_skips(tmp_path):
    assert [duration_bucket(n, 30.0) for n in (1799, 1800, 5399, 5400)] == ["Short", "Medium", "Medium", "Long"]
    results = [{**VSTAR_ITEM, "answer_vqa": "A frisbee."}, dict(VSTAR_ITEM)]
    skipped: list = []
    queries = load_benchmark("vstar", _write(tmp_path / "results.json", results), skipped=skipped)
    assert [q.qid for q in queries] == ["vs001_0"]
    assert [s.entry for s in skipped] == ["index 1"] and "answer_vqa" in skipped[0].reason
    assert len(load_benchmark("vstar", tmp_path / "results.json", require_answer_vqa=False)) == 2


def test_vstar_bad_box_named(tmp_path):
    bad = {**VSTAR_ITEM, "bboxes": [{"timestamp": 3, "frame_index": 90, "xmin": 1, "ymin": 2, "xmax": "wide"}]}
    with pytest.raises(AnnotationError, match=r"\[entry index 0\]: bboxes\[0\]\.xmax must be a number, got 'wide'"):
        load_benchmark("vstar", _write(tmp_path / "bad.json", [bad]))
    bad["bboxes"][0]["xmax"] = 30
    with pytest.raises(AnnotationError, match=r"\[entry index 0\]: missing field 'ymax'"):
        load_benchmark("vstar", _write(tmp_path / "bad.json", [bad]))


# --------------------------------------------------------------------------- unified


def test_unified_reads_project_jsonl_and_names_bad_lines(tmp_path):
    q = _synthetic_query("q0", tmp_path / "v.mp4", 2, 3, fps=5.0, version=1)
    write_queries(tmp_path / "a.jsonl", [q], relative_to=str(tmp_path))
    assert load_benchmark("unified", tmp_path / "a.jsonl") == [q]
    bad = tmp_path / "b.jsonl"
    bad.write_text(
        json.dumps(q.to_json())
        + '\n{"qid": "x", "video": "v", "query": "q", "fps": 1e999999}\n'
        + '{"qid": "y", "video": "v", "query": "q", "num_frames": 1e999}\n'
    )
    skipped: list = []
    assert load_benchmark("unified", bad, on_error="skip", skipped=skipped) == [q]
    assert [s.entry for s in skipped] == ["line 2", "line 3"]
    with pytest.raises(AnnotationError, match=r"\[entry line 2\]"):
        load_benchmark("unified", bad)


# --------------------------------------------------------------------------- hostile input

_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
_garbage = st.recursive(
    _leaves,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=6), kids, max_size=4),
    max_leaves=12,
)
_VALID_DOCS = {
    "hcstvg_v1": lambda: HC_V1,
    "hcstvg_v2": lambda: HC_V1,
    "vidstg": lambda: [_vidstg_entry()],
    "charades_sta": lambda: [{"video": "a.mp4", "caption": "c", "timestamp": [1, 2]}],
    "vstar": lambda: [VSTAR_ITEM],
    "unified": lambda: {"qid": "q", "video": "v.mp4", "query": "x", "span_frames": [0, 1], "fps": 1, "boxes": {}},
}


def _mutate(doc, data):
    """Replace one randomly chosen node of a valid document by garbage (reaches deep parse paths)."""
    if isinstance(doc, (dict, list)) and doc and data.draw(st.integers(0, 4)) > 0:  # mostly descend
        keys = list(doc.keys()) if isinstance(doc, dict) else list(range(len(doc)))
        key = data.draw(st.sampled_from(keys))
        copy = dict(doc) if isinstance(doc, dict) else list(doc)
        copy[key] = _mutate(doc[key], data)
        return copy
    return data.draw(_garbage)


def _load_any(name: str, path: Path, tmp: Path) -> list:
    kw = {}
    if name == "vidstg":
        kw["trajectories"] = _write(tmp / "traj.json", _tubedetr_trajectories(range(0, 40)))
    return load_benchmark(name, path, **kw)


@pytest.mark.parametrize("name", BENCHMARKS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_json_gives_queries_or_annotation_error(tmp_path, name, data):
    doc = data.draw(_garbage) if data.draw(st.booleans()) else _mutate(_VALID_DOCS[name](), data)
    path = _write(tmp_path / "garbage.json", doc)
    try:
        queries = _load_any(name, path, tmp_path)
    except AnnotationError as exc:
        assert str(path) in str(exc)
    else:
        assert all(isinstance(q, GroundingQuery) for q in queries)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=_garbage)
def test_garbage_vidstg_trajectories_give_annotation_error(tmp_path, doc):
    ann = _write(tmp_path / "ann.json", [_vidstg_entry()])
    traj = _write(tmp_path / "traj.json", {VID: doc} if isinstance(doc, dict) else doc)
    try:
        queries = load_benchmark("vidstg", ann, trajectories=traj)
    except AnnotationError as exc:
        assert str(ann) in str(exc) or str(traj) in str(exc)
    else:
        assert len(queries) == 3


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=80))
def test_any_text_gives_charades_queries_or_annotation_error(tmp_path, text):
    path = tmp_path / "c.txt"
    path.write_text(text, encoding="utf-8")
    try:
        queries = load_benchmark("charades_sta", path)
    except AnnotationError as exc:
        assert str(path) in str(exc)
    else:
        assert all(q.span_s[0] <= q.span_s[1] for q in queries)


def test_unified_video_root_overrides_the_annotation_folder(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"qid": "q", "video": "clips/v.mp4", "query": "x"}\n', encoding="utf-8")
    [q] = load_benchmark("unified", tmp_path / "a.jsonl", video_root=tmp_path / "media")
    assert q.video == str((tmp_path / "media" / "clips" / "v.mp4").resolve())


def test_synthetic_hcstvg_export_reads_back_as_the_unified_annotations(tmp_path):
    """``stvg synth`` writes real MP4s plus both files; the HC-STVG export must carry the same GT."""
    synth = pytest.importorskip("stvg_plugin.synth")
    video = pytest.importorskip("stvg_plugin.video")
    annotations = synth.generate_synthetic(tmp_path, num_videos=2, seed=3, duration_s=(2.0, 3.0))
    unified = load_benchmark("unified", annotations)
    native = load_benchmark("hcstvg_v1", tmp_path / "hcstvg.json", video_root=tmp_path)
    assert len(native) == len(unified) >= 2
    for n, u in zip(native, unified):
        fields = ("qid", "video", "query", "fps", "num_frames", "width", "height", "span_frames", "span_s", "boxes")
        assert {f: getattr(n, f) for f in fields} == {f: getattr(u, f) for f in fields}
        info = video.probe_video(n.video)
        assert (info.num_frames, info.width, info.height) == (n.num_frames, n.width, n.height)
        assert info.fps == pytest.approx(n.fps)


def test_nested_file_errors_keep_the_nested_file_name(tmp_path):
    ann = _write(tmp_path / "ann.json", [_vidstg_entry()])
    (tmp_path / "vidor").mkdir()
    _write(tmp_path / "vidor" / f"{VID}.json", {"video_id": VID, "trajectories": "none"})
    with pytest.raises(AnnotationError) as info:
        load_benchmark("vidstg", ann, vidor_dir=tmp_path / "vidor")
    assert "[entry index 0]" in str(info.value) and f"{VID}.json: VidOR annotation needs" in str(info.value)


def test_charades_jsonl_bad_line_is_skippable(tmp_path):
    path = tmp_path / "c.jsonl"
    good = json.dumps({"video": "a.mp4", "caption": "c", "timestamp": [1, 2]})
    path.write_text(good + "\n{not json\n" + good + "\n", encoding="utf-8")
    with pytest.raises(AnnotationError, match=r"\[entry line 2\]: invalid JSON"):
        load_benchmark("charades_sta", path)
    skipped: list = []
    assert [q.qid for q in load_benchmark("charades_sta", path, on_error="skip", skipped=skipped)] == ["a_0", "a_2"]
    assert [s.entry for s in skipped] == ["line 2"]


def test_deeply_nested_json_line_is_an_entry_error(tmp_path):
    path = tmp_path / "deep.jsonl"
    path.write_text('{"video": "a.mp4", "caption": "c", "timestamp": [1, 2]}\n' + "[" * 100000 + "\n", encoding="utf-8")
    with pytest.raises(AnnotationError, match=r"\[entry line 2\]"):
        load_benchmark("charades_sta", path)
    path.write_text('{"qid": "q", "video": "a.mp4", "query": "c"}\n' + "{" * 100000 + "\n", encoding="utf-8")
    with pytest.raises(AnnotationError, match=r"\[entry line 2\]"):
        load_benchmark("unified", path)
