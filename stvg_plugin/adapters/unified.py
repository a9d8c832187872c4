"""The project's own JSONL (docs/FORMATS.md) through :func:`stvg_plugin.data.read_queries`.

``read_queries`` stops at the first bad line; with ``on_error="skip"`` (or when ``read_queries``
trips over something it does not check, such as an integer too large for a float) the lines are
parsed one by one with the same :meth:`GroundingQuery.from_json`, so each problem names its line.
"""

from __future__ import annotations

import os
from pathlib import Path

from stvg_plugin.adapters._common import EntryRunner, check_on_error, require_file
from stvg_plugin.adapters.registry import BenchmarkSpec, DataSource, register_benchmark
from stvg_plugin.data import AnnotationError, GroundingQuery, decode_json_line, read_queries


def read_unified(
    annotations: str | os.PathLike,
    video_root: str | os.PathLike | None = None,
    *,
    on_error: str = "raise",
    skipped: list | None = None,
) -> list[GroundingQuery]:
    """Relative ``video`` paths resolve against ``video_root`` if given, else the file's folder."""
    check_on_error(on_error)
    path = require_file(annotations)
    base = str(Path(video_root).resolve()) if video_root is not None else str(path.resolve().parent)
    if on_error == "raise" and video_root is None:
        try:
            return read_queries(path)
        except AnnotationError:
            raise
        except (RecursionError, MemoryError):
            raise
        except Exception:  # re-parsed line by line below, so the error names its line
            pass
    return _read_per_line(path, base, EntryRunner(path, on_error, skipped))


def _read_per_line(path: Path, base: str, runner: EntryRunner) -> list[GroundingQuery]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise AnnotationError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path) from None
    out: list[GroundingQuery] = []
    seen: set[str] = set()
    for lineno, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            q = runner.run(f"line {lineno}", _parse_line, line, base, seen)
            if q is not None:
                seen.add(q.qid)
                out.append(q)
    return out


def _parse_line(line: str, base: str, seen: set[str]) -> GroundingQuery:
    q = GroundingQuery.from_json(decode_json_line(line), base_dir=base)
    if q.qid in seen:
        raise AnnotationError(f"duplicate qid {q.qid!r}")
    return q


register_benchmark(BenchmarkSpec("unified", read_unified, sources=(
    DataSource("unified", "STVG_UNIFIED_ANNOTATIONS"),
    DataSource("synthetic", "STVG_SYNTHETIC_DIR", annotations_file="annotations.jsonl",
               lmms_tasks={"stvg_synthetic": None}, what="folder written by `stvg synth`"),
)))
