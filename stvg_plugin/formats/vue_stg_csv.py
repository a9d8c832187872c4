"""VUE-STG (Vidi2) CSVs -> predictions / queries, read as ``VUE_STG/tube.py`` reads them.

``tubes.csv``: ``query_id,time_ms,x0,y0,x1,y1`` (normalised corners; extra columns ignored). Rows with
an empty or NaN required field are dropped (the official ``dropna``), ``time_ms`` is truncated to an
integer (``astype(int)``), and every remaining row is kept in file order in ``extra["vue_rows"]``, so
several boxes in one second, duplicate times and zero-area rows are scored exactly as the official
(:mod:`stvg_plugin.metrics.vue_stg`). The benchmark directory (``video.csv``, ``query.csv``,
``tubes.csv``) becomes queries by :func:`read_vue_stg_benchmark`.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterator
from pathlib import Path

from stvg_plugin.data import AnnotationError, GroundingPrediction, GroundingQuery

TUBE_COLUMNS = ("query_id", "time_ms", "x0", "y0", "x1", "y1")


def read_tube_rows(path: str | os.PathLike) -> dict[str, list[list[float]]]:
    """``{query_id: [[time_ms, x0, y0, x1, y1], ...]}`` in file order (queries in first-seen order)."""
    out: dict[str, list[list[float]]] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in TUBE_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise AnnotationError(f"CSV missing required columns: {', '.join(missing)}", path)
        for lineno, row in enumerate(reader, start=2):
            values = []
            for c in TUBE_COLUMNS[1:]:
                text = (row.get(c) or "").strip()
                try:
                    values.append(float(text) if text else math.nan)
                except ValueError:
                    raise AnnotationError(f"column {c!r} is not a number", path, f"line {lineno}") from None
            qid = (row.get("query_id") or "").strip()
            if not qid or any(math.isnan(v) for v in values):
                continue  # dropna(subset=required)
            if math.isinf(values[0]):
                raise AnnotationError("time_ms is infinite", path, f"line {lineno}")
            out.setdefault(qid, []).append([int(values[0]), *values[1:]])
    return out


def read_vue_stg_predictions(path: str | os.PathLike) -> Iterator[GroundingPrediction]:
    for qid, rows in read_tube_rows(path).items():
        yield GroundingPrediction(qid=qid, extra={"vue_rows": rows})


def read_vue_stg_benchmark(root: str | os.PathLike, fps: float = 1.0) -> list[GroundingQuery]:
    """``video.csv`` + ``query.csv`` + ``tubes.csv`` -> one query per GT tube (``extra["vue_rows"]``,
    ``extra["video_duration"]``). ``root`` is their folder or the ``tubes.csv`` in it. Boxes stay in
    ``vue_rows`` (normalised, seconds-based); ``fps`` only serves the frame fields the data model needs."""
    root = Path(root)
    if root.is_file():
        root = root.parent
    for name in ("video.csv", "query.csv", "tubes.csv"):
        if not (root / name).is_file():
            raise AnnotationError(f"VUE-STG benchmark file {name} not found", root / name)
    with open(root / "video.csv", newline="", encoding="utf-8") as fh:
        durations = {r["video_id"]: float(r["video_duration"]) for r in csv.DictReader(fh)}
    with open(root / "query.csv", newline="", encoding="utf-8") as fh:
        query_rows = {r["query_id"]: r for r in csv.DictReader(fh)}
    out = []
    for qid, rows in read_tube_rows(root / "tubes.csv").items():
        info = query_rows.get(qid)
        if info is None:
            raise AnnotationError("query_id not in query.csv", root / "tubes.csv", f"query {qid!r:.60}")
        duration = durations.get(info["video_id"])
        if duration is None:
            raise AnnotationError("video_id not in video.csv", root / "query.csv", f"query {qid!r:.60}")
        times = [r[0] / 1000 for r in rows]
        start, end = int(min(times) * fps), int(max(times) * fps) + 1
        out.append(
            GroundingQuery(
                qid=qid, video=info["video_id"], query=info.get("query_text", ""), fps=fps,
                num_frames=max(int(math.ceil(duration * fps)), end), width=1, height=1, span_frames=(start, end),
                span_s=(min(times), max(times)), video_id=info["video_id"],
                extra={"vue_rows": rows, "video_duration": duration},
            )  # fmt: skip
        )
    return out
