"""Readers of native benchmark annotations into the unified :class:`~stvg_plugin.data.GroundingQuery`.

One module per benchmark, each documenting its source convention (1-based / 0-based, inclusive /
exclusive) next to its converter; docs/FORMATS.md collects the mappings. Every reader raises
:class:`~stvg_plugin.data.AnnotationError` naming the file and the entry, or with
``on_error="skip"`` appends a :class:`SkippedEntry` per bad entry to the ``skipped`` list it is given.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from stvg_plugin.adapters._common import BenchmarkError, SkippedEntry
from stvg_plugin.adapters.charades import read_charades_sta, write_charades_txt
from stvg_plugin.adapters.hcstvg import read_hcstvg, write_hcstvg
from stvg_plugin.adapters.unified import read_unified
from stvg_plugin.adapters.vidstg import read_vidstg, write_vidstg
from stvg_plugin.adapters.vstar import duration_bucket, read_vstar
from stvg_plugin.data import AnnotationError, GroundingQuery

BENCHMARKS = ("hcstvg_v1", "hcstvg_v2", "vidstg", "charades_sta", "vstar", "unified")

_DEFAULT_PROTOCOL = {
    "hcstvg_v1": "tubedetr",
    "hcstvg_v2": "tubedetr",
    "vidstg": "tubedetr",
    "unified": "tubedetr",
    "charades_sta": "tvg",
    "vstar": "vstar",
}


def _hcstvg(version: int) -> Callable[..., list[GroundingQuery]]:
    def read(annotations, video_root=None, **kw):
        return read_hcstvg(annotations, video_root, version=version, **kw)

    return read


_READERS: dict[str, Callable[..., list[GroundingQuery]]] = {
    "hcstvg_v1": _hcstvg(1),
    "hcstvg_v2": _hcstvg(2),
    "vidstg": read_vidstg,
    "charades_sta": read_charades_sta,
    "vstar": read_vstar,
    "unified": read_unified,
}


def _canonical(name: str) -> str:
    key = str(name).strip().lower().replace("-", "_")
    if key not in _READERS:
        raise BenchmarkError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    return key


def default_protocol(name: str) -> str:
    """The metric protocol a benchmark's papers report (``stvg_plugin.metrics.PROTOCOLS``)."""
    return _DEFAULT_PROTOCOL[_canonical(name)]


def load_benchmark(
    name: str, annotations: str | os.PathLike, video_root: str | os.PathLike | None = None, **kw
) -> list[GroundingQuery]:
    """Read ``annotations`` in benchmark ``name``'s native format into unified queries.

    Common keywords: ``on_error="raise"|"skip"`` and ``skipped=<list to fill>``. Per benchmark:
    ``video_parts`` (hcstvg_v2), ``trajectories`` / ``vidor_dir`` (vidstg), ``probe`` (charades_sta),
    ``require_answer_vqa`` (vstar).
    """
    reader = _READERS[_canonical(name)]
    skipped = kw.get("skipped")
    if skipped is None:
        skipped = kw["skipped"] = []
    skips_before = len(skipped)
    queries = reader(annotations, video_root, **kw)
    if not queries and len(skipped) == skips_before:  # else the run reports 0 queries as null metrics, exit 0
        raise AnnotationError("no queries: the file holds no entries", annotations)
    return queries


__all__ = [
    "BENCHMARKS",
    "BenchmarkError",
    "SkippedEntry",
    "default_protocol",
    "duration_bucket",
    "load_benchmark",
    "read_charades_sta",
    "read_hcstvg",
    "read_unified",
    "read_vidstg",
    "read_vstar",
    "write_charades_txt",
    "write_hcstvg",
    "write_vidstg",
]
