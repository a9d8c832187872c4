"""HC-STVG ``eval_hcvg.py`` prediction JSON -> predictions.

``{video: {"st_frame": s, "ed_frame": e, "bbox": {"<frame>": [x1, y1, x2, y2]}}}`` with inclusive
frames numbered like the annotation's ``st_frame`` (1-based, ``frame_base=1``); our frames are 0-based
and end-exclusive, so frame k becomes k - 1 and the span ``[s - 1, e)``. A reversed span stays reversed
(``eval_hcvg`` reads it as given). qid = the video key, as :mod:`stvg_plugin.adapters.hcstvg` names queries.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping

from stvg_plugin.adapters._common import load_json_file
from stvg_plugin.data import AnnotationError, GroundingPrediction


def read_eval_hcvg(path: str | os.PathLike, frame_base: int = 1) -> Iterator[GroundingPrediction]:
    raw = load_json_file(path)
    if not isinstance(raw, Mapping):
        raise AnnotationError(f"expected a JSON object keyed by video, got {type(raw).__name__}", path)
    for video, entry in raw.items():
        where = f"video {video!r:.80}"
        if not isinstance(entry, Mapping):
            raise AnnotationError("entry is not an object", path, where)
        try:
            st, ed = int(entry["st_frame"]), int(entry["ed_frame"])
        except KeyError as exc:
            raise AnnotationError(f"missing field {exc.args[0]!r}", path, where) from None
        except (TypeError, ValueError, OverflowError):
            raise AnnotationError("st_frame / ed_frame must be integers", path, where) from None
        bbox = entry.get("bbox") or {}
        if not isinstance(bbox, Mapping):
            raise AnnotationError("'bbox' must be an object {frame: [x1, y1, x2, y2]}", path, where)
        boxes = {}
        for key, box in bbox.items():
            try:
                frame = int(key)
            except (TypeError, ValueError):
                raise AnnotationError(f"bbox key {key!r:.40} is not a frame number", path, where) from None
            if not isinstance(box, (list, tuple)) or len(box) != 4:
                raise AnnotationError(f"bbox at frame {frame} must be 4 numbers", path, where)
            try:
                boxes[frame - frame_base] = [float(v) for v in box]
            except (TypeError, ValueError):
                raise AnnotationError(f"bbox at frame {frame} has a non-number", path, where) from None
        yield GroundingPrediction(qid=str(video), span_frames=(st - frame_base, ed - frame_base + 1), boxes=boxes)
