"""TubeDETR evaluator inputs -> predictions.

TubeDETR's ``engine.py`` hands its evaluators two dicts (and ``save_pred`` writes them out):
``predictions = {"<video_id>_<frame_id>": {"boxes": [[x1, y1, x2, y2], ...]}}`` (absolute pixels, the
first box is scored) and ``video_predictions = {video_id: {"sted": [start, end], "qtype": ...}}`` (raw
frames, end-exclusive). This reads a JSON object with those two keys. Its frames are the video's
0-based frames, as ours (the HC-STVG off-by-one lies in TubeDETR's GT, which the ``tubedetr`` protocol
reproduces with ``extra["tubedetr_frame_offset"]``). A TubeDETR video id maps to the query whose
``extra["tubedetr_video_id"]``, else qid, else ``video_id`` equals it (as text).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence

from stvg_plugin.adapters._common import load_json_file
from stvg_plugin.data import AnnotationError, GroundingPrediction, GroundingQuery


def _query_index(queries: Sequence[GroundingQuery]) -> dict[str, GroundingQuery]:
    index: dict[str, GroundingQuery] = {}
    for q in queries:  # weakest key first, so the stronger ones win
        for key in (q.video_id, q.qid, q.extra.get("tubedetr_video_id")):
            if key is not None:
                index[str(key)] = q
    return index


def read_tubedetr(path: str | os.PathLike, queries: Sequence[GroundingQuery] = ()) -> Iterator[GroundingPrediction]:
    raw = load_json_file(path)
    if not isinstance(raw, Mapping) or not isinstance(raw.get("video_predictions"), Mapping):
        raise AnnotationError("expected an object with 'video_predictions' (and 'predictions')", path)
    frames = raw.get("predictions") or {}
    if not isinstance(frames, Mapping):
        raise AnnotationError("'predictions' must be an object {'<video>_<frame>': {'boxes': ...}}", path)
    by_video: dict[str, dict[int, list[float]]] = {}
    for image_id, entry in frames.items():
        video, sep, frame = str(image_id).rpartition("_")
        try:
            box = entry["boxes"][0]
            by_video.setdefault(video, {})[int(frame)] = [float(v) for v in box]
        except (KeyError, IndexError, TypeError, ValueError):
            raise AnnotationError("not '<video>_<frame>' with boxes [[x1, y1, x2, y2]]", path,
                                  f"prediction {image_id!r:.60}") from None  # fmt: skip
    index = _query_index(queries)
    for video, entry in raw["video_predictions"].items():
        q = index.get(str(video))
        sted = entry.get("sted") if isinstance(entry, Mapping) else None
        try:
            span = (int(sted[0]), int(sted[1])) if sted is not None else None
        except (TypeError, ValueError, IndexError):
            raise AnnotationError("'sted' must be [start, end]", path, f"video {video!r:.60}") from None
        boxes = by_video.get(str(video), {})
        yield GroundingPrediction(qid=q.qid if q is not None else str(video), span_frames=span, boxes=boxes)
