"""Shared plumbing of the native-format readers: file loading, field coercion, per-entry error policy.

Every reader parses one native entry at a time inside :meth:`EntryRunner.run`, so whatever goes wrong
in an entry (a missing key, a string where a number belongs, a ragged box) surfaces as an
:class:`AnnotationError` naming the file and the entry, or, with ``on_error="skip"``, as a named
:class:`SkippedEntry` the caller can report; never as a ``KeyError`` from deep inside.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from stvg_plugin.data import AnnotationError, GroundingQuery, StvgError, frames_to_seconds

T = TypeVar("T")
ON_ERROR = ("raise", "skip")


class BenchmarkError(StvgError, ValueError):
    """A benchmark name or reader option the adapters do not know (not a data problem)."""


class SkippedEntry(NamedTuple):
    """One native entry left out of the load: where it was and why (for the run report)."""

    path: str
    entry: str
    reason: str


def check_on_error(on_error: str) -> None:
    if on_error not in ON_ERROR:
        raise BenchmarkError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")


def require_file(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.is_file():
        raise AnnotationError("file not found", p)
    return p


class _DuplicateKey(Exception):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook``: a key given twice in one object would silently drop an entry."""
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return out


def load_json_file(path: str | os.PathLike, *, unique_keys: bool = False) -> Any:
    """Parse a whole JSON file; a syntax error, bad encoding, absurd nesting or an integer too long
    for Python (> 4 300 digits) names the file. A byte-order mark is skipped. ``unique_keys``: a
    key repeated within one object is an error (for formats keyed by id, where it would drop an entry)."""
    p = require_file(path)
    try:
        with p.open("r", encoding="utf-8-sig") as fh:
            return json.load(fh, object_pairs_hook=_unique_keys if unique_keys else None)
    except json.JSONDecodeError as exc:
        raise AnnotationError(f"invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})", p) from None
    except UnicodeDecodeError as exc:
        raise AnnotationError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", p) from None
    except RecursionError:
        raise AnnotationError("JSON nested too deeply to parse", p) from None
    except _DuplicateKey as exc:
        raise AnnotationError(f"key {exc.key[:120]!r} appears twice in one object (one entry would be lost)", p) \
            from None
    except ValueError:  # the int_max_str_digits limit; the message would not name the file
        raise AnnotationError("invalid JSON (an integer longer than 4300 digits)", p) from None


class EntryRunner:
    """Applies the ``on_error`` policy to per-entry parsing and collects the skips."""

    def __init__(self, path: str | os.PathLike, on_error: str = "raise", skipped: list | None = None):
        check_on_error(on_error)
        self.path = str(path)
        self.on_error = on_error
        self.skipped: list[SkippedEntry] = skipped if skipped is not None else []

    def run(self, entry: Any, fn: Callable[..., T], *args: Any) -> T | None:
        """``fn(*args)``; on failure raise naming ``entry`` or record a skip and return ``None``."""
        try:
            out = fn(*args)
            for q in out if isinstance(out, list) else [out]:
                if isinstance(q, GroundingQuery) and q.source is None:
                    q.source = f"{self.path} [entry {entry}]"  # for errors raised after reading
            return out
        except AnnotationError as exc:  # keep a nested file's name (e.g. a VidOR JSON), drop our own
            reason = _bare_message(exc) if exc.path in (None, self.path) else str(exc)
        except MemoryError:
            raise
        except Exception as exc:  # any slip in an entry (even RecursionError on absurd nesting) must name it
            reason = f"{type(exc).__name__}: {exc}"
        if self.on_error == "raise":
            raise AnnotationError(reason, self.path, entry)
        self.skip(entry, reason)
        return None

    def skip(self, entry: Any, reason: str) -> None:
        """Record a deliberate skip (also used for skips a reference evaluator makes)."""
        self.skipped.append(SkippedEntry(self.path, str(entry), reason))


def _bare_message(exc: AnnotationError) -> str:
    """The message without a location prefix, so re-raising with file + entry does not repeat it."""
    text = str(exc)
    if exc.path is None and exc.entry is None:
        return text
    prefix = f"{exc.path}" if exc.path is not None else ""
    if exc.entry is not None:
        prefix += f" [entry {exc.entry}]"
    return text[len(prefix) + 2 :] if text.startswith(prefix + ": ") else text


# --------------------------------------------------------------------------- field coercion
# These raise AnnotationError without a location; EntryRunner adds the file and the entry.


def field(obj: Mapping, *names: str) -> Any:
    """The first present (non-null) of ``names``; the error lists every accepted spelling."""
    for name in names:
        if name in obj and obj[name] is not None:
            return obj[name]
    spelled = " or ".join(repr(n) for n in names)
    raise AnnotationError(f"missing field {spelled}")


def as_mapping(value: Any, what: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise AnnotationError(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def as_list(value: Any, what: str) -> list:
    if not isinstance(value, list):
        raise AnnotationError(f"{what} must be a JSON list, got {type(value).__name__}")
    return value


def as_str(value: Any, what: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise AnnotationError(f"{what} must be a string, got {type(value).__name__}")


def as_float(value: Any, what: str) -> float:
    """A finite float; numeric strings are accepted because some exports quote their numbers."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise AnnotationError(f"{what} must be a number, got {type(value).__name__}")
    try:
        out = float(value)
    except (ValueError, OverflowError):
        raise AnnotationError(f"{what} must be a number, got {value!r:.60}") from None
    if not math.isfinite(out):
        raise AnnotationError(f"{what} must be finite, got {value!r:.60}")
    return out


def as_int(value: Any, what: str) -> int:
    """An integer; integral floats (``12.0``) and numeric strings are accepted, ``12.5`` is not."""
    out = as_float(value, what)
    if not out.is_integer():
        raise AnnotationError(f"{what} must be an integer, got {value!r:.60}")
    return int(out)


def as_box(values: Any, what: str) -> list[float]:
    seq = as_list(values, what)
    if len(seq) != 4:
        raise AnnotationError(f"{what} must have 4 numbers, got {len(seq)}")
    return [as_float(v, what) for v in seq]


def as_positive(value: Any, what: str, cast: Callable[[Any, str], Any] = as_int) -> Any:
    out = cast(value, what)
    if out <= 0:
        raise AnnotationError(f"{what} must be > 0, got {out}")
    return out


# --------------------------------------------------------------------------- video paths


class VideoResolver:
    """Maps a native video name to a path under ``video_root``.

    Order: ``root/<subdir>/<name>`` when a sub-folder mapping is given (HC-STVG v2 packages), then
    ``root/<name>``, then a one-off recursive search of ``root`` by file name and by stem (datasets
    ship in nested packages). Unresolved names stay ``root/<name>`` so the video reader reports
    the missing file by path. Without a root the bare file name is returned.
    """

    def __init__(self, video_root: str | os.PathLike | None, subdirs: Mapping[str, str] | None = None):
        self.root = Path(video_root) if video_root is not None else None
        self.subdirs = dict(subdirs or {})
        self._by_name: dict[str, Path] | None = None
        self._by_stem: dict[str, Path] | None = None

    def __call__(self, name: str, default_ext: str = "") -> str:
        stem = Path(name).stem if Path(name).suffix else name
        file_name = name if Path(name).suffix or not default_ext else name + default_ext
        if self.root is None:
            return file_name
        sub = self.subdirs.get(stem) or self.subdirs.get(name)
        candidates = [self.root / sub / file_name] if sub else []
        candidates.append(self.root / file_name)
        for cand in candidates:
            if cand.is_file():
                return str(cand)
        self._build_index()
        found = self._by_name.get(Path(file_name).name) or self._by_stem.get(stem)
        return str(found if found is not None else candidates[0])

    def _build_index(self) -> None:
        if self._by_name is not None:
            return
        self._by_name, self._by_stem = {}, {}
        if not self.root.is_dir():
            return
        for p in sorted(self.root.rglob("*")):
            if p.is_file():
                self._by_name.setdefault(p.name, p)
                self._by_stem.setdefault(p.stem, p)


def frame_span_seconds(start: int, end: int, fps: float) -> tuple[float, float] | None:
    return frames_to_seconds(start, end, fps) if fps > 0 else None
