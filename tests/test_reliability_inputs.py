"""Odd annotation and prediction content (issue 16, items 3-4 and the silent coercions).

Every malformed value is refused when the file is read, with one line naming the file, the entry
and the field (never a traceback from the metric engine, never an allocation sized by the value);
values the documented rules say to reject and count are counted, not fatal.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from stvg_plugin.adapters import load_benchmark
from stvg_plugin.cli import main
from stvg_plugin.data import MAX_VIDEO_FRAMES, AnnotationError, read_predictions, read_queries

GOOD = {"qid": "a", "video": "v.mp4", "query": "x", "fps": 10, "num_frames": 50, "width": 100, "height": 100,
        "span_frames": [10, 20], "boxes": {"10": [1, 1, 50, 50], "15": [1, 1, 50, 50]}}
PRED = {"qid": "a", "span_frames": [10, 20], "boxes": {"10": [1, 1, 50, 50], "15": [1, 1, 50, 50]}}


def _jsonl(path: Path, *rows: dict) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _evaluate(tmp_path: Path, ann: Path, pred: Path, *extra: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["evaluate", f"annotations={ann}", f"predictions={pred}", f"output_dir={tmp_path / 'out'}", *extra])
    return code, out.getvalue(), err.getvalue()


def _refused(tmp_path: Path, query: dict, field: str, *extra: str) -> str:
    """``stvg evaluate`` exits 2 with one line naming the file, line 2 and the field; writes nothing."""
    ann = _jsonl(tmp_path / "ann.jsonl", {**GOOD, "qid": "ok"}, query)
    code, _, err = _evaluate(tmp_path, ann, _jsonl(tmp_path / "pred.jsonl", PRED), *extra)
    assert code == 2, err
    line = [x for x in err.splitlines() if x.strip()]
    assert len(line) == 1 and "Traceback" not in err, err
    assert f"{ann} [entry line 2]" in line[0] and field in line[0], line[0]
    assert not (tmp_path / "out" / "summary.json").exists()
    return line[0]


@pytest.mark.parametrize("offset", ["x", [1], 1e30, True, 1.5])
def test_bad_tubedetr_frame_offset_is_named(tmp_path, offset) -> None:
    _refused(tmp_path, {**GOOD, "extra": {"tubedetr_frame_offset": offset}}, "extra.tubedetr_frame_offset")


@pytest.mark.parametrize("by_time", [{"3": 5}, [1, 2], {"3": [1, 2, 3]}, {"3": [1, 2, 3, "x"]}])
def test_bad_vstar_boxes_by_time_is_named(tmp_path, by_time) -> None:
    _refused(tmp_path, {**GOOD, "extra": {"boxes_by_time": by_time}}, "extra.boxes_by_time", "protocol=vstar")


@pytest.mark.parametrize("protocol", ["stcat", "cg_stvg", "llava_next_stvg", "official_hcstvg", "tubedetr"])
@pytest.mark.parametrize("change, field", [
    ({"num_frames": 1e10}, "num_frames"),
    ({"extra": {"segment": [0, 1e10]}}, "extra.segment"),
    ({"span_frames": [0, 1e10]}, "span_frames"),
    ({"num_frames": MAX_VIDEO_FRAMES + 1}, "num_frames"),
])
def test_sizes_beyond_the_cap_are_refused_before_allocating(tmp_path, protocol, change, field) -> None:
    msg = _refused(tmp_path, {**GOOD, **change}, field, f"protocol={protocol}")
    assert str(MAX_VIDEO_FRAMES) in msg


@pytest.mark.parametrize("span", [[7.9, 32.2], [False, True], [-3, 5], ["1", "2"]])
def test_gt_span_frames_are_never_coerced(tmp_path, span) -> None:
    _refused(tmp_path, {**GOOD, "span_frames": span}, "span_frames")


@pytest.mark.parametrize("change, field", [({"num_frames": 7.5}, "num_frames"), ({"width": True}, "width"),
                                           ({"height": "100"}, "height"), ({"fps": "10"}, "fps")])
def test_sizes_must_be_numbers_of_the_right_kind(tmp_path, change, field) -> None:
    _refused(tmp_path, {**GOOD, **change}, field)


def test_empty_annotation_file_is_an_error(tmp_path) -> None:
    ann = tmp_path / "ann.jsonl"
    ann.write_text("\n\n", encoding="utf-8")
    code, _, err = _evaluate(tmp_path, ann, _jsonl(tmp_path / "pred.jsonl", PRED))
    assert code == 2 and str(ann) in err and "no queries" in err


def test_parse_failed_must_be_a_boolean(tmp_path) -> None:
    pred = _jsonl(tmp_path / "pred.jsonl", {**PRED, "parse_failed": "false"})
    with pytest.raises(AnnotationError, match=r"pred.jsonl \[entry line 1\]: 'parse_failed' must be true or false"):
        read_predictions(pred)
    assert read_predictions(_jsonl(tmp_path / "ok.jsonl", {**PRED, "parse_failed": False}))[0].parse_failed is False


def test_five_number_predicted_box_is_rejected_and_counted(tmp_path) -> None:
    """docs/FORMATS.md: not exactly 4 numbers -> read as 4 NaNs, never fatal. Official protocols score the
    NaN IoU 0 and count the query in num_nan; with repair=true the boxes are rejected and counted."""
    ann = _jsonl(tmp_path / "ann.jsonl", GOOD)
    pred = _jsonl(tmp_path / "pred.jsonl", {**PRED, "boxes": {"10": [1, 1, 50, 50, 9], "15": [1, 1, 50, 50],
                                                              "16": ["a", 1, 2, 3]}})
    code, _, err = _evaluate(tmp_path, ann, pred, "protocol=stcat")
    assert code == 0, err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["num_nan"] == 1 and summary["repair"] is False, summary
    code, _, err = _evaluate(tmp_path, ann, pred, "protocol=stcat", "repair=true")
    assert code == 0, err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["boxes_rejected_nan"] == 2 and summary["repair"] is True, summary


def test_predicted_span_frames_are_never_coerced(tmp_path) -> None:
    for span in ([7.9, 32.2], [False, True]):
        with pytest.raises(AnnotationError, match="span_frames"):
            read_predictions(_jsonl(tmp_path / "p.jsonl", {**PRED, "span_frames": span}))


def test_bom_in_unified_jsonl_and_charades_txt(tmp_path) -> None:
    ann = tmp_path / "ann.jsonl"
    ann.write_bytes(b"\xef\xbb\xbf" + (json.dumps(GOOD) + "\n").encode())
    assert read_queries(ann)[0].qid == "a"
    txt = tmp_path / "charades.txt"
    txt.write_bytes(b"\xef\xbb\xbfAO8RW 0.0 6.9##a person is putting a book on a shelf.\n")
    assert load_benchmark("charades_sta", txt)[0].qid == "AO8RW_0"


def _hcstvg_entry(**change) -> dict:
    return {"img_num": 100, "width": 320, "height": 240, "caption": "the man walks", "st_frame": 3,
            "bbox": [[1, 2, 10, 10]] * 5, **change}


def test_duplicate_key_in_hcstvg_is_refused(tmp_path) -> None:
    entry = json.dumps(_hcstvg_entry())
    path = tmp_path / "hc.json"
    path.write_text('{"v1.mp4": ' + entry + ', "v1.mp4": ' + entry + "}", encoding="utf-8")
    with pytest.raises(AnnotationError, match=r"hc.json: key 'v1.mp4' appears twice"):
        load_benchmark("hcstvg_v1", path)


def _huge_int_files(root: Path) -> dict[str, Path]:
    huge = "9" * 5000
    files = {
        "hcstvg_v1": ('{"v.mp4": ' + json.dumps(_hcstvg_entry(img_num=0)).replace('"img_num": 0', f'"img_num": {huge}')
                      + "}"),
        "vidstg": f'[{{"vid": "x", "fps": 1, "frame_count": {huge}}}]',
        "vstar": f'[{{"vid": "x", "fps": {huge}}}]',
        "charades_sta": f'[{{"video": "x.mp4", "caption": "c", "timestamp": [0, {huge}]}}]',
    }
    out = {}
    for name, text in files.items():
        out[name] = root / f"{name}.json"
        out[name].write_text(text, encoding="utf-8")
    return out


@pytest.mark.parametrize("name", ["hcstvg_v1", "vidstg", "vstar", "charades_sta"])
def test_huge_integers_in_native_json_name_the_file(tmp_path, name) -> None:
    path = _huge_int_files(tmp_path)[name]
    kw = {"trajectories": str(path)} if name == "vidstg" else {}
    with pytest.raises(AnnotationError, match="4300 digits") as info:
        load_benchmark(name, path, **kw)
    assert str(path) in str(info.value) and "9999" not in str(info.value)


def test_native_adapters_apply_the_same_caps(tmp_path) -> None:
    path = tmp_path / "hc.json"
    path.write_text(json.dumps({"v.mp4": _hcstvg_entry(img_num=10**10)}), encoding="utf-8")
    with pytest.raises(AnnotationError, match=r"hc.json \[entry v.mp4\]: 'num_frames' must be in"):
        load_benchmark("hcstvg_v1", path)


@pytest.mark.parametrize("benchmark", ["unified", "hcstvg_v1"])
def test_metric_stage_errors_name_the_file_and_entry(tmp_path, benchmark) -> None:
    """A protocol refuses a query it cannot score naming its qid; the error shown names the file and entry."""
    if benchmark == "unified":
        ann = tmp_path / "ann.jsonl"
        ann.write_text("\n" + json.dumps({**GOOD, "qid": "b"}) + "\n", encoding="utf-8")  # on line 2
        where = f"{ann} [entry line 2] (qid b)"
    else:
        ann = tmp_path / "hc.json"
        ann.write_text(json.dumps({"v1.mp4": _hcstvg_entry()}), encoding="utf-8")
        where = f"{ann} [entry v1.mp4] (qid v1.mp4)"
    code, _, err = _evaluate(tmp_path, ann, _jsonl(tmp_path / "pred.jsonl", PRED), f"benchmark={benchmark}",
                             "protocol=rec")
    assert code == 2 and "Traceback" not in err
    assert f"{where}: " in err, err
