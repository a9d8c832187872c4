"""V-STaR ``V_STaR_test.json`` -> unified queries.

Source convention (benchmarks.md §5): a list of items with video info (``vid``, ``domain``, ``fps``,
``width``, ``height``, ``frame_count``), the "what" pair (``question``, ``answer``, ``chain``), the
"when" question and GT ``timestamps = [start_s, end_s]`` (seconds), the "where" questions
(``spatial_question``, ``spatial_question_2``) about ``object``, and ``bboxes``: a list of
``{timestamp, frame_index, xmin, ymin, xmax, ymax}`` in original pixels (``frame_index`` 0-based,
unconfirmed) or, in the first release, a list of ``{"<timestamp>_<frame_index>": {xmin, ...}}``.

Unified record: qid ``f"{vid}_{i}"`` (``i`` = position in the list: items carry no id and a video
may hold several items), ``query`` = ``temporal_question`` (the sentence the GT span answers; all
native questions are kept in ``extra`` under their native names), ``span_s = timestamps``,
``span_frames`` from :func:`stvg_plugin.data.seconds_to_span`, boxes xyxy keyed by ``frame_index``,
``extra["box_timestamps"] = {"<frame>": timestamp}`` (string keys so the mapping survives JSONL; the
value keeps its native int/float type because the V-STaR scorer matches by ``str(timestamp)``),
``extra["boxes_by_time"] = {str(timestamp): xyxy}`` (the same boxes under the scorer's keys),
``extra["domain"]`` and ``extra["duration_bucket"]`` (Short < 60 s <= Medium < 180 s <= Long on
``round(frame_count / fps, 2)``).

Skips: the reference evaluator drops items without ``answer_vqa`` (a model-output field). A plain
annotation file has none, so by default those skips apply only to a results file, i.e. when at
least one item has ``answer_vqa``; each is recorded as a named skip.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from stvg_plugin.adapters._common import (
    EntryRunner,
    VideoResolver,
    as_float,
    as_int,
    as_list,
    as_mapping,
    as_positive,
    as_str,
    field,
    load_json_file,
)
from stvg_plugin.adapters.registry import BenchmarkSpec, DataSource, register_benchmark
from stvg_plugin.data import AnnotationError, GroundingQuery, check_query, seconds_to_span

TEXT_FIELDS = ("question", "answer", "chain", "object", "temporal_question", "spatial_question", "spatial_question_2")
CORNERS = ("xmin", "ymin", "xmax", "ymax")
SKIP_FIELD = "answer_vqa"


def duration_bucket(frame_count: int, fps: float) -> str:
    """V-STaR's length groups: ``round(frame_count / fps, 2)`` < 60 Short, < 180 Medium, else Long."""
    length = round(frame_count / fps, 2)
    return "Short" if length < 60 else "Medium" if length < 180 else "Long"


def read_vstar(
    annotations: str | os.PathLike,
    video_root: str | os.PathLike | None = None,
    *,
    require_answer_vqa: bool | None = None,
    on_error: str = "raise",
    skipped: list | None = None,
) -> list[GroundingQuery]:
    """Read V-STaR items; ``require_answer_vqa`` None = skip items lacking it only in a results file."""
    raw = load_json_file(annotations)
    if not isinstance(raw, list):
        raise AnnotationError(f"expected a JSON list of items, got {type(raw).__name__}", annotations)
    if require_answer_vqa is None:
        require_answer_vqa = any(isinstance(item, Mapping) and SKIP_FIELD in item for item in raw)
    resolve = VideoResolver(video_root)
    runner = EntryRunner(annotations, on_error, skipped)
    out = []
    for index, item in enumerate(raw):
        if require_answer_vqa and isinstance(item, Mapping) and not item.get(SKIP_FIELD):  # eval.py: falsy skips
            runner.skip(f"index {index}", f"no '{SKIP_FIELD}' (the V-STaR evaluator skips such items)")
            continue
        q = runner.run(f"index {index}", _parse_item, index, item, resolve)
        if q is not None:
            out.append(q)
    return out


def _parse_item(index: int, item: Any, resolve: VideoResolver) -> GroundingQuery:
    item = as_mapping(item, "item")
    vid = as_str(field(item, "vid"), "vid")
    fps = as_positive(field(item, "fps"), "fps", as_float)
    frame_count = as_positive(field(item, "frame_count"), "frame_count")
    width = as_positive(field(item, "width"), "width")
    height = as_positive(field(item, "height"), "height")
    stamps = as_list(field(item, "timestamps"), "timestamps")
    if len(stamps) != 2:
        raise AnnotationError(f"timestamps must be [start_s, end_s], got {stamps!r:.60}")
    t0, t1 = (as_float(v, "timestamps") for v in stamps)
    if t1 < t0:
        raise AnnotationError(f"timestamps end {t1} < start {t0}")
    span = seconds_to_span(t0, t1, fps, frame_count)
    boxes, box_times, gt_list = _boxes(as_list(item.get("bboxes") or [], "bboxes"))
    extra: dict[str, Any] = {
        "domain": as_str(item["domain"], "domain") if item.get("domain") is not None else None,
        "duration_bucket": duration_bucket(frame_count, fps),
        "box_timestamps": box_times,
        # what stvg_plugin.metrics.vstar reads: GT boxes under the scorer's own str(timestamp) keys
        "boxes_by_time": {str(box_times[str(f)]): boxes[f] for f in sorted(boxes)},
        # ... and as eval.py iterates them: (str(timestamp), xyxy) in file order, duplicate timestamps kept
        "vstar_gt_boxes": gt_list,
    }
    for name in TEXT_FIELDS:
        if item.get(name) is not None:
            extra[name] = as_str(item[name], name)
    return check_query(GroundingQuery(
        qid=f"{vid}_{index}",
        video=resolve(vid, default_ext=".mp4"),
        query=extra.get("temporal_question") or as_str(field(item, "question"), "question"),
        task="stvg",
        fps=fps,
        num_frames=frame_count,
        width=width,
        height=height,
        span_frames=(span.start, span.end),
        span_s=(t0, t1),
        boxes=boxes,
        video_id=vid,
        extra=extra,
    ))


def _boxes(raw: list) -> tuple[dict[int, list[float]], dict[str, int | float | str], list]:
    """Both bbox layouts -> ({frame: xyxy}, {"<frame>": native timestamp}, [[str(timestamp), xyxy], ...])."""
    boxes: dict[int, list[float]] = {}
    times: dict[str, int | float | str] = {}
    listed: list = []
    for i, rec in enumerate(raw):
        rec = as_mapping(rec, f"bboxes[{i}]")
        if "frame_index" in rec or "timestamp" in rec:
            stamp = _timestamp_value(field(rec, "timestamp"), f"bboxes[{i}].timestamp")
            frame = as_int(field(rec, "frame_index"), f"bboxes[{i}].frame_index")
            pairs = [(stamp, frame, rec)]
        else:  # first release: {"<timestamp>_<frame_index>": {xmin, ...}}
            pairs = []
            for key, corners in rec.items():
                stamp, sep, frame = str(key).rpartition("_")
                if not sep:
                    raise AnnotationError(f"bboxes[{i}] key {key!r:.40} is not '<timestamp>_<frame_index>'")
                pairs.append((_timestamp_value(stamp, f"bboxes[{i}] key"), as_int(frame, f"bboxes[{i}] key"), corners))
        for stamp, frame, corners in pairs:
            corners = as_mapping(corners, f"bboxes[{i}]")
            boxes[frame] = [as_float(field(corners, c), f"bboxes[{i}].{c}") for c in CORNERS]
            times[str(frame)] = stamp
            listed.append([str(stamp), boxes[frame]])
    return boxes, times, listed


def _timestamp_value(raw: Any, what: str) -> int | float | str:
    """Keep the native value so ``str(value)`` is the scorer's key; old-format keys stay as written."""
    if isinstance(raw, str):
        as_float(raw, what)  # validate only
        return raw
    value = as_float(raw, what)
    return raw if isinstance(raw, int) else value


register_benchmark(BenchmarkSpec("vstar", read_vstar, protocol="vstar", sources=(
    DataSource("vstar", "STVG_VSTAR_ANNOTATIONS", "STVG_VSTAR_VIDEOS", lmms_tasks={"stvg_vstar": None},
               what="V_STaR_test.json"),
)))
