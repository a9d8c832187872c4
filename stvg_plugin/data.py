"""The one data model every part of stvg shares: spans, tubes, queries, predictions.

Conventions (fixed project-wide, see README "Formats"):

* frames are **0-based**, spans are **end-exclusive** ``[start, end)``;
* seconds and frames are both kept: ``span_s`` is ``[start_frame / fps, end_frame / fps]``;
* boxes are absolute-pixel ``[x1, y1, x2, y2]`` in the original video resolution, keyed by
  0-based frame index (JSON keys are the decimal string of the index).

The unified annotation format is JSON Lines, one :class:`GroundingQuery` per line; predictions
are JSON Lines of :class:`GroundingPrediction`. Readers raise :class:`AnnotationError` naming the
file and the line/entry, so a malformed file never produces a traceback from deep inside.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

TASKS = ("stvg", "tvg", "rec")


class StvgError(Exception):
    """Base class of every error this project raises on purpose."""


class AnnotationError(StvgError, ValueError):
    """A malformed annotation or prediction entry; the message names the file and the entry."""

    def __init__(self, message: str, path: str | os.PathLike | None = None, entry: Any = None):
        where = ""
        if path is not None:
            where += f"{path}"
        if entry is not None:
            where += f" [entry {entry}]"
        super().__init__(f"{where}: {message}" if where else message)
        self.path = str(path) if path is not None else None
        self.entry = entry


@dataclass(frozen=True)
class Span:
    """A 0-based end-exclusive frame span ``[start, end)``."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"span end {self.end} < start {self.start}")

    @property
    def length(self) -> int:
        return self.end - self.start

    def to_seconds(self, fps: float) -> tuple[float, float]:
        return frames_to_seconds(self.start, self.end, fps)

    def clip(self, num_frames: int) -> Span:
        s = min(max(self.start, 0), num_frames)
        e = min(max(self.end, s), num_frames)
        return Span(s, e)

    def as_list(self) -> list[int]:
        return [self.start, self.end]


#: Float noise absorbed by the seconds -> frames rule: ``t * fps`` within 1e-9 of a whole frame counts
#: as that frame (on a sampled universe, ``metrics.frames``, the same 1e-9 applies to the seconds).
SECONDS_TOLERANCE = 1e-9


def frame_seconds(frame: float, fps: float) -> float:
    """The timestamp of a 0-based frame, ``frame / fps``: the one frames -> seconds rule."""
    return frame / fps


def frames_to_seconds(start: float, end: float, fps: float) -> tuple[float, float]:
    """Frame span -> seconds ``(start / fps, end / fps)`` (``span_s`` of ``span_frames``).

    Plain division, so a reversed span stays reversed; the caller checks ``fps > 0``.
    """
    return (frame_seconds(start, fps), frame_seconds(end, fps))


def seconds_to_span(t0: float, t1: float, fps: float, num_frames: int | None = None) -> Span:
    """Seconds -> the frames whose timestamps ``f / fps`` lie in ``[t0, t1]``.

    First frame with ``f / fps >= t0``; last frame with ``f / fps <= t1`` (+1, end-exclusive).
    This is the notes' "seconds -> frames" rule applied on the full frame axis; the TubeDETR
    protocol re-applies it on its sampled frame universe (``metrics.frames``). Exact Python
    integers: a value beyond the float range raises ``OverflowError`` (the readers name the entry);
    :func:`seconds_to_frame_spans` is the same rule on arrays.
    """
    if t1 < t0:
        t0, t1 = t1, t0
    start = math.ceil(t0 * fps - SECONDS_TOLERANCE)
    end = math.floor(t1 * fps + SECONDS_TOLERANCE) + 1
    start = max(start, 0)
    if num_frames is not None:
        end = min(end, num_frames)
    return Span(start, max(end, start))


_FRAME_LIMIT = float(2**62)  # |frame| bound before the int64 cast: +-1e300 s must not wrap around


def seconds_to_frame_spans(fps: Any, t0: Any, t1: Any) -> tuple[np.ndarray, np.ndarray]:
    """:func:`seconds_to_span`'s rule on arrays (the metric engine's dense protocols): ``(start, end)`` int64.

    ``t0 <= t1`` is the caller's job, and there is no ``num_frames`` cap. ``t * fps`` is clipped to
    +-2**62 before the cast (a finite but huge ``span_s`` such as 1e300 would otherwise cast to
    garbage with a RuntimeWarning); values inside that range give :func:`seconds_to_span`'s frames.
    """
    with np.errstate(over="ignore"):  # t * fps may overflow to +-inf; the clip below bounds it
        f0 = np.clip(t0 * fps, -_FRAME_LIMIT, _FRAME_LIMIT)
        f1 = np.clip(t1 * fps, -_FRAME_LIMIT, _FRAME_LIMIT)
    start = np.ceil(f0 - SECONDS_TOLERANCE).astype(np.int64)
    end = np.floor(f1 + SECONDS_TOLERANCE).astype(np.int64) + 1
    start = np.maximum(start, 0)
    return start, np.maximum(end, start)


Boxes = dict[int, list[float]]


_REJECTED_BOX = [math.nan] * 4  # the box rule rejects and counts it (docs/FORMATS.md "Box repair rule")


def _boxes_from_json(raw: Any, path: Any, entry: Any, lenient: bool = False) -> Boxes:
    """``{"<frame>": [x1, y1, x2, y2]}``; with ``lenient`` (predictions) a box that is not 4 numbers is
    kept as NaNs, so the metric's box rule rejects and counts it instead of the whole file failing."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise AnnotationError(f"'boxes' must be an object {{frame: [x1,y1,x2,y2]}}, got {type(raw).__name__}", path, entry)
    out: Boxes = {}
    for k, v in raw.items():
        try:
            frame = int(k)
        except (TypeError, ValueError, OverflowError):
            raise AnnotationError(f"box key {k!r} is not a frame index", path, entry) from None
        if lenient and not _is_box(v):
            out[frame] = list(_REJECTED_BOX)
            continue
        if not isinstance(v, (list, tuple)) or len(v) != 4:
            raise AnnotationError(f"box at frame {k} must be 4 numbers, got {_short(v)}", path, entry)
        try:
            out[frame] = [float(x) for x in v]
        except (TypeError, ValueError, OverflowError):
            raise AnnotationError(f"box at frame {k} has a non-number: {_short(v)}", path, entry) from None
    return out


def _boxes_to_json(boxes: Boxes) -> dict[str, list[float]]:
    return {str(k): [float(x) for x in v] for k, v in sorted(boxes.items())}


@dataclass
class GroundingQuery:
    """One grounding query with its ground truth (one line of the unified JSONL).

    ``extra`` carries benchmark-specific fields the metric protocols need, e.g.
    ``segment`` (VidSTG ``used_segment`` as ``[begin, end)``), ``tubedetr_frame_offset``
    (HC-STVG: TubeDETR reads the 1-based ``st_frame`` as a 0-based index), ``domain``
    (V-STaR), ``timestamps_key`` etc.
    """

    qid: str
    video: str
    query: str
    task: str = "stvg"
    fps: float = 0.0
    num_frames: int = 0
    width: int = 0
    height: int = 0
    span_frames: tuple[int, int] | None = None
    span_s: tuple[float, float] | None = None
    boxes: Boxes = field(default_factory=dict)
    qtype: str | None = None
    video_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: where it was read from ("<file> [entry line 12]"), for errors raised later (never serialized)
    source: str | None = field(default=None, compare=False, repr=False)

    @property
    def span(self) -> Span | None:
        return Span(*self.span_frames) if self.span_frames is not None else None

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.fps if self.fps else 0.0

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "qid": self.qid,
            "video": self.video,
            "query": self.query,
            "task": self.task,
            "fps": self.fps,
            "num_frames": self.num_frames,
            "width": self.width,
            "height": self.height,
            "span_frames": list(self.span_frames) if self.span_frames is not None else None,
            "span_s": list(self.span_s) if self.span_s is not None else None,
            "boxes": _boxes_to_json(self.boxes),
        }
        if self.qtype is not None:
            d["qtype"] = self.qtype
        if self.video_id is not None:
            d["video_id"] = self.video_id
        if self.extra:
            d["extra"] = self.extra
        return d

    @classmethod
    def from_json(cls, d: Any, path: Any = None, entry: Any = None, base_dir: str | None = None) -> GroundingQuery:
        if not isinstance(d, Mapping):
            raise AnnotationError(f"expected a JSON object, got {type(d).__name__}", path, entry)
        for key in ("qid", "video", "query"):
            if key not in d or d[key] is None:
                raise AnnotationError(f"missing required field '{key}'", path, entry)
        task = d.get("task", "stvg")
        if task not in TASKS:
            raise AnnotationError(f"task must be one of {TASKS}, got {task!r}", path, entry)
        fps = d.get("fps") or 0.0
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps) or fps < 0:
            raise AnnotationError(f"'fps' must be a finite non-negative number, got {_short(fps)}", path, entry)
        fps = float(fps)
        try:
            num_frames = _whole(d.get("num_frames") or 0, "num_frames")
            width = _whole(d.get("width") or 0, "width")
            height = _whole(d.get("height") or 0, "height")
        except AnnotationError as exc:
            raise AnnotationError(str(exc), path, entry) from None
        span_frames = _pair(d.get("span_frames"), int, "span_frames", path, entry)
        span_s = _pair(d.get("span_s"), float, "span_s", path, entry)
        try:
            if span_frames is None and span_s is not None and fps > 0:
                sp = seconds_to_span(span_s[0], span_s[1], fps, num_frames or None)
                span_frames = (sp.start, sp.end)
            if span_frames is not None and span_frames[1] < span_frames[0]:
                raise AnnotationError(f"span_frames end < start: {list(span_frames)}", path, entry)
            if span_s is None and span_frames is not None and fps > 0:
                span_s = frames_to_seconds(span_frames[0], span_frames[1], fps)
        except OverflowError:  # e.g. span_s * fps beyond the float range
            raise AnnotationError("span_s / span_frames out of range for this fps", path, entry) from None
        video = str(d["video"])
        if base_dir is not None and video and not os.path.isabs(video):
            video = os.path.normpath(os.path.join(base_dir, video))
        extra = d.get("extra") or {}
        if not isinstance(extra, Mapping):
            raise AnnotationError("'extra' must be an object", path, entry)
        for key in ("qtype", "video_id"):
            if d.get(key) is not None and not isinstance(d[key], str):
                raise AnnotationError(f"'{key}' must be a string, got {type(d[key]).__name__}", path, entry)
        query = cls(
            qid=str(d["qid"]),
            video=video,
            query=str(d["query"]),
            task=task,
            fps=fps,
            num_frames=num_frames,
            width=width,
            height=height,
            span_frames=span_frames,
            span_s=span_s,
            boxes=_boxes_from_json(d.get("boxes"), path, entry),
            qtype=d.get("qtype"),
            video_id=d.get("video_id"),
            extra=dict(extra),
        )
        try:
            check_query(query)
        except AnnotationError as exc:
            raise AnnotationError(str(exc), path, entry) from None
        if path is not None or entry is not None:
            query.source = f"{path} [entry {entry}]" if path is not None else f"[entry {entry}]"
        return query


def locate_error(exc: AnnotationError, queries: Iterable[GroundingQuery]) -> AnnotationError:
    """An error raised after reading (e.g. by a metric protocol) naming only ``qid X``: the same
    message naming the file and line the query came from, when known; else ``exc`` itself."""
    entry = str(exc.entry or "")
    if exc.path is not None or not entry.startswith("qid "):
        return exc
    qid = entry[4:]
    source = next((q.source for q in queries if q.qid == qid and q.source), None)
    if source is None:
        return exc
    prefix = f" [entry {exc.entry}]: "
    message = str(exc).split(prefix, 1)[1] if prefix in str(exc) else str(exc)
    return AnnotationError(f"{source} (qid {qid}): {message}")


# Size caps checked when an annotation is read, before anything is allocated from these values
# (the dense metric protocols allocate one row per frame of the video or of the GT span).
MAX_VIDEO_FRAMES = 1 << 24  # 16 777 216 frames: 6.5 days at 30 fps (~134 MB per int64 array)
MAX_FRAME_SIDE = 1 << 16  # width / height in pixels


def _whole(value: Any, name: str, low: int = 0, high: int = MAX_VIDEO_FRAMES) -> int:
    """An integer in ``[low, high]``: ints and integral floats (``12.0``); never bools, strings or ``7.9``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AnnotationError(f"'{name}' must be an integer, got {_short(value)}")
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        raise AnnotationError(f"'{name}' must be an integer, got {_short(value)}")
    if not low <= value <= high:
        raise AnnotationError(f"'{name}' must be in [{low}, {high}], got {_short(value)}")
    return int(value)


def check_query(q: GroundingQuery) -> GroundingQuery:
    """Refuse values the metric protocols cannot use; raises :class:`AnnotationError` naming the field.

    Raised without a location: :meth:`GroundingQuery.from_json` adds the file and line, the native
    adapters' ``EntryRunner`` the file and entry. Caps (:data:`MAX_VIDEO_FRAMES`,
    :data:`MAX_FRAME_SIDE`) are checked here, so no protocol allocates from an absurd value.
    """
    _whole(q.num_frames, "num_frames")
    _whole(q.width, "width", high=MAX_FRAME_SIDE)
    _whole(q.height, "height", high=MAX_FRAME_SIDE)
    extra = q.extra
    offset = extra.get("tubedetr_frame_offset")
    if offset is not None:
        offset = _whole(offset, "extra.tubedetr_frame_offset", low=-MAX_VIDEO_FRAMES)
    if q.span_frames is not None:
        # HC-STVG's st_frame is 1-based in its README but TubeDETR's loader also scores st_frame 0 (its
        # frame index 0): such a query starts at -offset in our 0-based frames, and no lower
        low = -offset if offset is not None and offset > 0 else 0
        start, end = (_whole(v, "span_frames", low=low) for v in q.span_frames)
        if end < start:
            raise AnnotationError(f"'span_frames' end < start: {[start, end]}")
    segment = extra.get("segment")
    if segment is not None:
        if not isinstance(segment, (list, tuple)) or len(segment) != 2:
            raise AnnotationError(f"'extra.segment' must be [begin, end), got {_short(segment)}")
        begin, end = (_whole(v, "extra.segment") for v in segment)
        if end < begin:
            raise AnnotationError(f"'extra.segment' end < begin: {[begin, end]}")
    by_time = extra.get("boxes_by_time")
    if by_time is not None:
        if not isinstance(by_time, Mapping):
            raise AnnotationError(f"'extra.boxes_by_time' must be an object {{time: box}}, got {_short(by_time)}")
        for key, box in by_time.items():
            if not _is_box(box):
                raise AnnotationError(f"'extra.boxes_by_time' box at {_short(key)} must be 4 finite numbers, "
                                      f"got {_short(box)}")
    return q


def _is_box(value: Any) -> bool:
    return (
        isinstance(value, (list, tuple))
        and len(value) == 4
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    )


def _pair(raw: Any, cast: type, name: str, path: Any, entry: Any) -> tuple | None:
    if raw is None:
        return None
    if not isinstance(raw, (list, tuple)) or len(raw) != 2:
        raise AnnotationError(f"'{name}' must be a pair [start, end], got {_short(raw)}", path, entry)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw):
        raise AnnotationError(f"'{name}' must hold two numbers, got {_short(raw)}", path, entry)
    if cast is int and not all(isinstance(v, int) or (math.isfinite(v) and v.is_integer()) for v in raw):
        raise AnnotationError(f"'{name}' must hold two integer frame indices, got {_short(raw)}", path, entry)
    try:
        vals = tuple(cast(v) for v in raw)
    except (TypeError, ValueError, OverflowError):
        raise AnnotationError(f"'{name}' has a non-number: {_short(raw)}", path, entry) from None
    if cast is float and not all(math.isfinite(v) for v in vals):
        raise AnnotationError(f"'{name}' has a non-finite number: {_short(raw)}", path, entry)
    if cast is int and not all(abs(v) <= _MAX_INDEX for v in vals):
        raise AnnotationError(f"'{name}' is out of range (|frame| > 2**53): {_short(raw)}", path, entry)
    return vals


_MAX_INDEX = 2**53  # frame indices beyond this cannot even be represented as float seconds


def _short(value: Any, limit: int = 120) -> str:
    """``repr`` for error messages, cut short (a hostile value may be megabytes long)."""
    try:
        text = repr(value)
    except ValueError:  # an int too long to print
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit] + "..."


def _optional_str(d: Mapping, key: str, path: Any, entry: Any) -> str | None:
    value = d.get(key)
    if value is not None and not isinstance(value, str):
        raise AnnotationError(f"'{key}' must be a string, got {type(value).__name__}", path, entry)
    return value


@dataclass
class GroundingPrediction:
    """A model's answer to one query, in the schema ``stvg evaluate`` reads.

    Exactly one of ``span_frames`` (0-based, end-exclusive) or ``span_s`` is needed;
    ``boxes`` are absolute-pixel xyxy keyed by 0-based frame. ``parse_failed`` marks an
    answer the parser could not read (``raw_text`` keeps it); ``error`` names a failure such
    as an undecodable video. ``span_source`` records which span estimate was used
    (``text``, ``relevance`` or ``combined``).
    """

    qid: str
    span_frames: tuple[int, int] | None = None
    span_s: tuple[float, float] | None = None
    boxes: Boxes = field(default_factory=dict)
    raw_text: str | None = None
    parse_failed: bool = False
    error: str | None = None
    span_source: str | None = None
    confidence: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"qid": self.qid}
        if self.span_frames is not None:
            d["span_frames"] = [int(self.span_frames[0]), int(self.span_frames[1])]
        if self.span_s is not None:
            d["span_s"] = [float(self.span_s[0]), float(self.span_s[1])]
        d["boxes"] = _boxes_to_json(self.boxes)
        for key in ("raw_text", "span_source", "confidence", "error"):
            val = getattr(self, key)
            if val is not None:
                d[key] = val
        if self.parse_failed:
            d["parse_failed"] = True
        if self.extra:
            d["extra"] = self.extra
        return d

    @classmethod
    def from_json(cls, d: Any, path: Any = None, entry: Any = None) -> GroundingPrediction:
        if not isinstance(d, Mapping):
            raise AnnotationError(f"expected a JSON object, got {type(d).__name__}", path, entry)
        if "qid" not in d:
            raise AnnotationError("missing required field 'qid'", path, entry)
        span_frames = _pair(d.get("span_frames"), int, "span_frames", path, entry)
        span_s = _pair(d.get("span_s"), float, "span_s", path, entry)
        conf = d.get("confidence")
        try:
            confidence = float(conf) if isinstance(conf, (int, float)) else None
        except OverflowError:
            raise AnnotationError("'confidence' is out of the float range", path, entry) from None
        extra = d.get("extra") or {}
        if not isinstance(extra, Mapping):
            raise AnnotationError(f"'extra' must be an object, got {type(extra).__name__}", path, entry)
        parse_failed = d.get("parse_failed", False)
        if parse_failed is None:
            parse_failed = False
        if not isinstance(parse_failed, bool):
            raise AnnotationError(f"'parse_failed' must be true or false, got {_short(parse_failed)}", path, entry)
        return cls(
            qid=str(d["qid"]),
            span_frames=span_frames,
            span_s=span_s,
            boxes=_boxes_from_json(d.get("boxes"), path, entry, lenient=True),
            raw_text=_optional_str(d, "raw_text", path, entry),
            parse_failed=parse_failed,
            error=_optional_str(d, "error", path, entry),
            span_source=_optional_str(d, "span_source", path, entry),
            confidence=confidence,
            extra=dict(extra),
        )


# --------------------------------------------------------------------------- JSONL I/O
# The one home of JSON Lines reading and writing (and of atomic writes, :func:`atomic_path`): every
# reader and writer of the project, strict or lenient, whole-file or appending, goes through these.


def decode_json_line(line: str) -> Any:
    """One JSONL line -> its object; a bad line raises :class:`AnnotationError` without a location
    (the caller adds the file and line): invalid JSON, nesting too deep, an integer too long to read."""
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise AnnotationError(f"invalid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise AnnotationError("JSON nested too deeply") from None
    except ValueError as exc:  # e.g. an integer longer than Python's int_max_str_digits
        raise AnnotationError(f"invalid JSON ({exc})") from None


def jsonl_line(obj: Any) -> str:
    """``obj`` as one JSONL line (UTF-8 kept as is, not ``\\u`` escaped), newline included."""
    return json.dumps(obj, ensure_ascii=False) + "\n"


def append_jsonl(fh: Any, obj: Any) -> None:
    """Append one line to an open JSONL log and flush it, so a kill loses at most the line being written
    (the resumable writers: ``stvg predict``'s partial file, the training log)."""
    fh.write(jsonl_line(obj))
    fh.flush()


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, object)`` for each non-empty line; a bad line raises naming it."""
    p = Path(path)
    if not p.is_file():
        raise AnnotationError("file not found", p)
    with p.open("rb") as fh:  # decoded per line, so invalid UTF-8 is named by its line
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8-sig").strip()  # a byte-order mark is not part of the first line
            except UnicodeDecodeError as exc:
                raise AnnotationError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", p, f"line {lineno}") from None
            if not line:
                continue
            try:
                obj = decode_json_line(line)
            except AnnotationError as exc:
                raise AnnotationError(str(exc), p, f"line {lineno}") from None
            yield lineno, obj


def read_queries(path: str | os.PathLike) -> list[GroundingQuery]:
    """Read a unified-format JSONL; relative ``video`` paths resolve against the file's folder."""
    base = str(Path(path).resolve().parent)
    out = []
    seen: set[str] = set()
    for lineno, obj in iter_jsonl(path):
        q = GroundingQuery.from_json(obj, path, f"line {lineno}", base_dir=base)
        if q.qid in seen:
            raise AnnotationError(f"duplicate qid {q.qid!r}", path, f"line {lineno}")
        seen.add(q.qid)
        out.append(q)
    return out


def iter_predictions(path: str | os.PathLike) -> Iterator[GroundingPrediction]:
    for lineno, obj in iter_jsonl(path):
        yield GroundingPrediction.from_json(obj, path, f"line {lineno}")


def read_predictions(path: str | os.PathLike) -> list[GroundingPrediction]:
    return list(iter_predictions(path))


def _default_file_mode() -> int:
    """0666 minus the process umask: what ``open()`` would have given (``mkstemp`` gives 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix); on success it replaces ``path``.

    The one atomic-write mechanism of the project: whatever writes the temporary file (text, JSONL,
    a figure, an MP4 muxer), ``path`` is either the complete new file or untouched, never half
    written; on any failure the temporary file is removed. The file gets a normal mode (0666 minus
    the umask), not ``mkstemp``'s 0600.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{p.stem}.", suffix=f".tmp{p.suffix}", dir=p.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, _default_file_mode())
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_jsonl(path: str | os.PathLike, rows: Iterable[Any]) -> int:
    """Atomically write rows (dicts or objects with ``to_json``) as JSONL; returns the count."""
    n = 0
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(jsonl_line(row.to_json() if hasattr(row, "to_json") else row))
            n += 1
    return n


def write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def write_queries(path: str | os.PathLike, queries: Iterable[GroundingQuery], relative_to: str | None = None) -> int:
    """Write queries as unified JSONL; with ``relative_to``, video paths are made relative to it."""

    def rows() -> Iterator[dict]:
        for q in queries:
            d = q.to_json()
            if relative_to is not None and os.path.isabs(d["video"]):
                d["video"] = os.path.relpath(d["video"], relative_to)
            yield d

    return write_jsonl(path, rows())
