"""Property-based fuzz: whatever the unified readers accept, every metric protocol can score (issue 16).

``test_reliability_properties.py`` checks that the readers return an object or ``AnnotationError``.
This closes the loop the issue asks for: the metric engine never sees a malformed value. For random
mutations of a valid query and prediction (hostile numbers, wrong types, the ``extra`` keys the
protocols read, e.g. V-STaR's ``boxes_by_time`` and ``answer_temporal``):

* an accepted query respects the documented caps (``MAX_VIDEO_FRAMES``, integer spans, start >= 0,
  typed ``extra.segment`` / ``extra.tubedetr_frame_offset`` / ``extra.boxes_by_time``);
* scoring an accepted (query, prediction) pair with every protocol either succeeds, with metric
  values in [0, 1], or raises a ``StvgError`` (a documented refusal such as "no GT span") - never
  another exception and never an allocation sized by a hostile value.
"""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_reliability_properties import _PRED, _QUERY, _field_values

from stvg_plugin.data import MAX_VIDEO_FRAMES, AnnotationError, GroundingPrediction, GroundingQuery, StvgError
from stvg_plugin.metrics import PROTOCOLS, evaluate

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# the extra keys the protocols read: plausible values (so many examples reach the metrics) or hostile ones
_small_pair = st.lists(st.integers(0, 60), min_size=2, max_size=2).map(sorted)
_box = st.lists(st.floats(-100, 200) | st.integers(-100, 200), min_size=4, max_size=4)
_plausible_extra = st.fixed_dictionaries({}, optional={
    "segment": _small_pair,
    "tubedetr_frame_offset": st.integers(-2, 5),
    "boxes_by_time": st.dictionaries(st.sampled_from(["0.2", "0.3", "1"]), _box, max_size=3),
})
_hostile_extra = st.fixed_dictionaries({}, optional={
    "segment": _field_values | st.lists(st.integers(-5, 10**11), min_size=2, max_size=2),
    "tubedetr_frame_offset": _field_values | st.integers(-(10**12), 10**12),
    "boxes_by_time": _field_values,
})
_pred_extra = st.fixed_dictionaries({}, optional={  # what the vstar protocol reads from a prediction
    "boxes_by_time": st.dictionaries(st.sampled_from(["0.2", "1"]), _box | _field_values, max_size=2) | _field_values,
    "answer_temporal": _field_values | st.text(max_size=30) | st.lists(st.floats(-5, 50), min_size=2, max_size=2),
})
_plausible = _small_pair | st.dictionaries(st.integers(-3, 45).map(str), _box, max_size=4) | st.integers(0, 100)
_hostile = _field_values | st.integers(-(10**11), 10**11) | st.floats(-1e11, 1e11)
_NUMERIC_KEYS = ("fps", "num_frames", "width", "height", "span_frames", "span_s", "boxes", "confidence")


@st.composite
def _mutated(draw, valid: dict, extras: str) -> dict:
    """Half the examples plausible (they reach the metrics), half hostile (they test the readers)."""
    hostile = draw(st.booleans())
    doc = dict(valid)
    keys = sorted(valid) if hostile else [k for k in _NUMERIC_KEYS if k in valid]
    for key in draw(st.lists(st.sampled_from(keys), max_size=2, unique=True)):
        doc[key] = draw(_hostile if hostile else _plausible)
    if extras == "query":
        doc["extra"] = draw(_hostile_extra if hostile else _plausible_extra)
    elif extras == "prediction":
        doc["extra"] = draw(_pred_extra)
    return doc


def _check_caps(q: GroundingQuery) -> None:
    assert 0 <= q.num_frames <= MAX_VIDEO_FRAMES and isinstance(q.num_frames, int)
    if q.span_frames is not None:
        assert all(type(v) is int for v in q.span_frames)
        assert 0 <= q.span_frames[0] <= q.span_frames[1] <= MAX_VIDEO_FRAMES
    seg = q.extra.get("segment")
    if seg is not None:
        assert 0 <= int(seg[0]) <= int(seg[1]) <= MAX_VIDEO_FRAMES and all(float(v).is_integer() for v in seg)
    offset = q.extra.get("tubedetr_frame_offset")
    assert offset is None or (not isinstance(offset, bool) and abs(offset) <= MAX_VIDEO_FRAMES)


@SETTINGS
@given(qdoc=_mutated(_QUERY, "query"), pdoc=_mutated(_PRED, "prediction"), protocol=st.sampled_from(PROTOCOLS))
def test_accepted_input_is_scored_or_refused_cleanly(qdoc, pdoc, protocol) -> None:
    try:
        q = GroundingQuery.from_json(qdoc, "ann.jsonl", "line 1")
        p = GroundingPrediction.from_json({**pdoc, "qid": q.qid}, "pred.jsonl", "line 1")
    except AnnotationError:
        return
    _check_caps(q)
    try:
        result = evaluate([q], [p], protocol=protocol)
    except StvgError:
        return
    for row in result.per_query:
        for key, value in row.items():
            if isinstance(value, float) and key.split("@")[0] in ("tIoU", "vIoU", "gt_vIoU", "R1", "AP", "accuracy"):
                assert math.isnan(value) or 0.0 <= value <= 1.0 + 1e-12, (key, value)
