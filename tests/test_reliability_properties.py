"""Property tests: any JSON, any bytes -> a query/prediction object or ``AnnotationError``, never another exception.

Not duplicated here (already covered): the native adapters on garbage JSON (``test_adapters.py``),
``parse_answer`` on any text (``test_parsing.py``), metric bounds / perfect = 1 / tIoU symmetry /
query-order invariance (``test_metrics_parity.py``). What was missing: the data model's own
readers, ``GroundingQuery.from_json`` and ``GroundingPrediction.from_json`` on hostile values
(huge integers, NaN/inf, wrong types in every field), and the JSONL readers on hostile bytes
(invalid UTF-8, torn lines, over-long integers).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stvg_plugin.data import (
    AnnotationError,
    GroundingPrediction,
    GroundingQuery,
    iter_predictions,
    read_queries,
)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([10**400, -(10**400), 2**63, -1, 0])  # beyond float range / int64
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=6), inner, max_size=5),
    max_leaves=20,
)

_QUERY = {
    "qid": "q",
    "video": "v.mp4",
    "query": "the red square",
    "task": "stvg",
    "fps": 10.0,
    "num_frames": 40,
    "width": 64,
    "height": 48,
    "span_frames": [2, 9],
    "span_s": [0.2, 0.9],
    "boxes": {"2": [1, 2, 10, 12], "3": [1, 2, 10, 12]},
    "qtype": "declarative",
    "video_id": "v",
    "extra": {"segment": [0, 39]},
}
_PRED = {
    "qid": "q",
    "span_frames": [2, 9],
    "span_s": [0.2, 0.9],
    "boxes": {"2": [1, 2, 10, 12]},
    "raw_text": "from 0.2 s to 0.9 s",
    "parse_failed": False,
    "error": None,
    "span_source": "text",
    "confidence": 0.5,
    "extra": {"k": 1},
}
# values that reach the numeric paths: pairs of huge / non-finite numbers, box maps with odd keys
_field_values = _json | st.lists(_scalars, min_size=2, max_size=2) | st.dictionaries(
    st.text(max_size=4) | st.integers().map(str), st.lists(_scalars, min_size=4, max_size=4) | _json, max_size=3
)


@st.composite
def _mutated(draw, valid: dict) -> dict:
    """A valid record with some fields replaced by arbitrary JSON values, some dropped, some added."""
    doc = dict(valid)
    for key in draw(st.lists(st.sampled_from(sorted(valid)), max_size=4, unique=True)):
        if draw(st.integers(0, 5)) == 0:
            doc.pop(key)
        else:
            doc[key] = draw(_field_values)
    doc.update(draw(st.dictionaries(st.text(max_size=5), _json, max_size=2)))
    return doc


def _documents(valid: dict):
    return _json | _mutated(valid)


def _check_query(q: GroundingQuery) -> None:
    assert isinstance(q.qid, str) and isinstance(q.video, str) and isinstance(q.query, str)
    assert math.isfinite(q.fps) and q.fps >= 0
    if q.span_frames is not None:
        assert q.span_frames[0] <= q.span_frames[1]
    for frame, box in q.boxes.items():
        assert isinstance(frame, int) and len(box) == 4 and all(isinstance(x, float) for x in box)
    json.dumps(q.to_json())  # what it read, it can write back


def _check_prediction(p: GroundingPrediction) -> None:
    assert isinstance(p.qid, str)
    for key in ("raw_text", "error", "span_source"):
        assert getattr(p, key) is None or isinstance(getattr(p, key), str), key
    assert p.confidence is None or isinstance(p.confidence, float)
    assert isinstance(p.extra, dict)
    json.dumps(p.to_json())


@SETTINGS
@given(doc=_documents(_QUERY))
def test_query_from_json_gives_a_query_or_annotation_error(doc):
    try:
        q = GroundingQuery.from_json(doc, "ann.jsonl", "line 1", base_dir="/data")
    except AnnotationError as exc:
        assert "ann.jsonl" in str(exc) and "line 1" in str(exc)
    else:
        _check_query(q)


@SETTINGS
@given(doc=_documents(_PRED))
def test_prediction_from_json_gives_a_prediction_or_annotation_error(doc):
    try:
        p = GroundingPrediction.from_json(doc, "preds.jsonl", "line 1")
    except AnnotationError as exc:
        assert "preds.jsonl" in str(exc) and "line 1" in str(exc)
    else:
        _check_prediction(p)


# a line of a JSONL file: a hostile record, raw bytes (invalid UTF-8, torn JSON), or an over-long number
_lines = (
    _documents(_QUERY).map(lambda d: json.dumps(d).encode())
    | _documents(_PRED).map(lambda d: json.dumps(d).encode())
    | st.binary(max_size=40).map(lambda b: b.replace(b"\n", b" "))
    | st.just(b'{"qid": "q", "video": "v", "query": "x", "fps": ' + b"9" * 5000 + b"}")
    | st.just(b'{"qid": "q", "video": "v", "query": "x"')  # torn
    | st.just(b'{"qid": "q", "video": "\xff\xfe", "query": "x"}')  # invalid UTF-8
)


@SETTINGS
@given(lines=st.lists(_lines, min_size=1, max_size=4), final_newline=st.booleans())
def test_jsonl_readers_give_objects_or_annotation_error(tmp_path: Path, lines, final_newline):
    path = tmp_path / "file.jsonl"
    path.write_bytes(b"\n".join(lines) + (b"\n" if final_newline else b""))
    for reader, check in ((read_queries, _check_query), (lambda p: list(iter_predictions(p)), _check_prediction)):
        try:
            out = reader(path)
        except AnnotationError as exc:
            assert str(path) in str(exc)
        else:
            for obj in out:
                check(obj)


@pytest.mark.parametrize(
    "line,needle",
    [
        (b'{"qid": "q", "video": "\xff", "query": "x"}', "UTF-8"),
        (b'{"qid": "q", "video": "v", "query": "x", "fps": ' + b"1" * 5000 + b"}", "invalid JSON"),
        (b'{"qid": "q", "video": "v", "query": "x", "fps": 10, "span_s": [0, 1e308]}', "span"),
        (b'{"qid": "q", "video": "v", "query": "x", "fps": 10, "span_frames": [0, ' + b"9" * 400 + b"]}", "span"),
        (b'{"qid": "q", "video": "v", "query": "x", "boxes": {"1": [0, 0, 1, ' + b"9" * 400 + b"]}}", "box"),
    ],
)
def test_known_hostile_lines_name_the_line(tmp_path: Path, line: bytes, needle: str):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"qid": "ok", "video": "v", "query": "x"}\n' + line + b"\n")
    with pytest.raises(AnnotationError, match=needle) as info:
        read_queries(path)
    assert "line 2" in str(info.value)


@pytest.mark.parametrize(
    "patch,needle",
    [
        ({"extra": [1, 2]}, "extra"),
        ({"extra": "ab"}, "extra"),
        ({"confidence": 10**400}, "confidence"),
        ({"raw_text": ["a"]}, "raw_text"),
        ({"error": {"reason": "x"}}, "error"),
        ({"span_frames": [0, 10**400]}, "span"),
    ],
)
def test_hostile_prediction_fields_are_annotation_errors(patch: dict, needle: str):
    with pytest.raises(AnnotationError, match=needle):
        GroundingPrediction.from_json({**_PRED, **patch}, "p.jsonl", "line 3")
