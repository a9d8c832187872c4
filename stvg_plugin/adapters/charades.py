"""Charades-STA (temporal grounding only) native text / lmms-eval JSON <-> unified queries.

Source convention (benchmarks.md §6): ``charades_sta_{train,test}.txt`` holds one query per line,
``<video_id> <start_s> <end_s>##<sentence>``, times in seconds. lmms-eval's re-hosted copy is a JSON
list (or JSONL) of ``{video, caption, timestamp: [s, e]}`` where ``video`` is the file name and
``timestamp`` may be a string such as ``"[24.3, 30.4]"``.

Unified record: ``task="tvg"``, ``span_s`` from the line, no boxes; qid ``f"{video_id}_{i}"`` with
``i`` the 0-based position of the query in the file (native lines carry no id). fps, frame count and
size are unknown (0) unless ``probe=True`` reads them from the video under ``video_root``; then
``span_frames`` follows from :func:`stvg_plugin.data.seconds_to_span`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stvg_plugin.adapters._common import (
    BenchmarkError,
    EntryRunner,
    VideoResolver,
    as_float,
    as_list,
    as_mapping,
    as_str,
    field,
    require_file,
)
from stvg_plugin.adapters.registry import BenchmarkSpec, DataSource, register_benchmark
from stvg_plugin.data import (
    AnnotationError,
    GroundingQuery,
    StvgError,
    atomic_write_text,
    check_query,
    decode_json_line,
    seconds_to_span,
)

LINE_RE = re.compile(r"^(\S+)\s+(\S+)\s+(\S+)\s*##(.*)$")
NUMBER_RE = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def read_charades_sta(
    annotations: str | os.PathLike,
    video_root: str | os.PathLike | None = None,
    *,
    probe: bool = False,
    on_error: str = "raise",
    skipped: list | None = None,
) -> list[GroundingQuery]:
    """Read the native ``.txt`` or lmms-eval ``.json``/``.jsonl`` (chosen by content, not name)."""
    if probe and video_root is None:
        raise BenchmarkError("probe=True needs video_root to find the videos")
    path = require_file(annotations)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark would become part of the first qid
    except UnicodeDecodeError as exc:
        raise AnnotationError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path) from None
    runner = EntryRunner(path, on_error, skipped)
    rows = _json_rows(text, path, runner) if text.lstrip()[:1] in ("[", "{") else _text_rows(text, runner)
    resolve = VideoResolver(video_root)
    prober = _Prober() if probe else None
    out = []
    for entry, position, row in rows:
        q = runner.run(entry, _to_query, row, position, resolve, prober)
        if q is not None:
            out.append(q)
    return out


def _text_rows(text: str, runner: EntryRunner) -> list[tuple[str, int, Any]]:
    """(entry, position among non-empty lines, row); positions count skipped lines so qids stay stable."""
    rows = []
    lines = [(n, line) for n, line in enumerate(text.split("\n"), start=1) if line.strip()]  # not splitlines()
    for position, (lineno, line) in enumerate(lines):
        row = runner.run(f"line {lineno}", _text_row, LINE_RE.match(line.strip()), line)
        if row is not None:
            rows.append((f"line {lineno}", position, row))
    return rows


def _text_row(match: re.Match | None, line: str) -> dict[str, Any]:
    if match is None:
        # the line is not quoted: the file may be anything (a secret), not a Charades-STA file at all
        raise AnnotationError("not a Charades-STA line: expected '<video_id> <start_s> <end_s>##<sentence>'")
    vid, start, end, sentence = match.groups()
    return {"video_id": vid, "video": f"{vid}.mp4", "caption": sentence.strip(), "timestamp": [start, end]}


def _json_rows(text: str, path: Path, runner: EntryRunner) -> list[tuple[str, int, Any]]:
    try:
        raw = json.loads(text)
    except json.JSONDecodeError:
        raw = None  # not one JSON document: JSON Lines
    except RecursionError:
        raise AnnotationError("JSON nested too deeply to parse", path) from None
    except ValueError:  # an integer longer than 4300 digits
        raise AnnotationError("invalid JSON (an integer longer than 4300 digits)", path) from None
    if isinstance(raw, list):
        return [(f"index {i}", i, row) for i, row in enumerate(raw)]
    if isinstance(raw, dict):  # a one-line JSONL file
        return [("line 1", 0, raw)]
    return _json_lines(text, runner)


def _json_lines(text: str, runner: EntryRunner) -> list[tuple[str, int, Any]]:
    rows = []
    lines = [(n, line) for n, line in enumerate(text.split("\n"), start=1) if line.strip()]
    for position, (lineno, line) in enumerate(lines):
        row = runner.run(f"line {lineno}", decode_json_line, line)
        if row is not None:
            rows.append((f"line {lineno}", position, row))
    return rows


def _timestamp(raw: Any) -> tuple[float, float]:
    if isinstance(raw, str):  # lmms-eval stores "[s, e]" as text; read numbers, never evaluate
        raw = NUMBER_RE.findall(raw)
    pair = as_list(list(raw) if isinstance(raw, tuple) else raw, "timestamp")
    if len(pair) != 2:
        raise AnnotationError(f"timestamp must be [start_s, end_s], got {pair!r:.60}")
    start, end = (as_float(v, "timestamp") for v in pair)
    if end < start:
        raise AnnotationError(f"timestamp end {end} < start {start}")
    return start, end


def _to_query(row: Any, index: int, resolve: VideoResolver, prober: _Prober | None) -> GroundingQuery:
    row = as_mapping(row, "entry")
    video_name = as_str(field(row, "video"), "video")
    vid = as_str(row["video_id"], "video_id") if row.get("video_id") is not None else Path(video_name).stem
    start, end = _timestamp(field(row, "timestamp"))
    q = GroundingQuery(
        qid=f"{vid}_{index}",
        video=resolve(video_name),
        query=as_str(field(row, "caption", "sentence", "query"), "caption"),
        task="tvg",
        span_s=(start, end),
        video_id=vid,
    )
    if prober is not None:
        info = prober(q.video)
        q.fps, q.num_frames, q.width, q.height = (
            float(info.fps),
            int(info.num_frames),
            int(info.width),
            int(info.height),
        )
        if q.fps > 0:
            span = seconds_to_span(start, end, q.fps, q.num_frames or None)
            q.span_frames = (span.start, span.end)
    return check_query(q)


class _Prober:
    """Probes each video once; a video that cannot be read becomes an entry error naming it."""

    def __init__(self) -> None:
        try:
            from stvg_plugin.video import probe_video  # lazy: optional heavy dependency (decord/av)
        except ImportError as exc:
            raise StvgError(f"probe=True needs stvg_plugin.video ({exc})") from None
        self.probe_video = probe_video
        self.cache: dict[str, Any] = {}

    def __call__(self, path: str) -> Any:
        if path not in self.cache:
            try:
                self.cache[path] = self.probe_video(path)
            except StvgError as exc:
                self.cache[path] = exc
        info = self.cache[path]
        if isinstance(info, Exception):
            raise AnnotationError(f"cannot probe video: {info}")
        return info


def write_charades_txt(path: str | os.PathLike, queries: Sequence[GroundingQuery]) -> None:
    """Write queries in the native ``<vid> <s> <e>##<sentence>`` form, atomically, in order.

    Reading it back yields qids ``f"{video_id}_{i}"``; times are written with ``repr`` precision.
    """
    lines = []
    for q in queries:
        if q.span_s is None:
            raise AnnotationError("Charades-STA needs span_s", path, q.qid)
        vid = q.video_id or Path(q.video).stem
        if not vid or any(c.isspace() for c in vid) or any(c in q.query for c in "\r\n") or "##" in vid:
            raise AnnotationError("video id must be non-empty without spaces; query on one line", path, q.qid)
        lines.append(f"{vid} {float(q.span_s[0])!r} {float(q.span_s[1])!r}##{q.query}\n")
    atomic_write_text(path, "".join(lines))


register_benchmark(BenchmarkSpec(
    "charades_sta",
    read_charades_sta,
    task="tvg",
    sources=(
        DataSource("charades_sta", "STVG_CHARADES_STA_ANNOTATIONS", "STVG_CHARADES_STA_VIDEOS",
                   lmms_tasks={"stvg_charades_sta": None}, what="charades_sta_test.txt"),
    ),
    task_options={"probe": True},  # fps / frame count / size come from the videos, not the .txt
))
