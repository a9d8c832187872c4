"""Readers of native benchmark annotations into the unified :class:`~stvg_plugin.data.GroundingQuery`.

One module per benchmark, registering its :class:`BenchmarkSpec` (:mod:`.registry`) and documenting
its source convention (1-based / 0-based, inclusive / exclusive) next to its converter; docs/FORMATS.md collects the mappings. Every reader raises
:class:`~stvg_plugin.data.AnnotationError` naming the file and the entry, or with
``on_error="skip"`` appends a :class:`SkippedEntry` per bad entry to the ``skipped`` list it is given.
"""

from __future__ import annotations

import os

from stvg_plugin.adapters._common import BenchmarkError, EntryRunner, SkippedEntry, require_file
from stvg_plugin.adapters.charades import read_charades_sta, write_charades_txt
from stvg_plugin.adapters.hcstvg import read_hcstvg, write_hcstvg
from stvg_plugin.adapters.registry import (
    BenchmarkSpec,
    DataSource,
    benchmark_names,
    benchmark_specs,
    get_benchmark,
    register_benchmark,
    unregister_benchmark,
)
from stvg_plugin.adapters.unified import read_unified
from stvg_plugin.adapters.vidstg import read_vidstg, write_vidstg
from stvg_plugin.adapters.vstar import duration_bucket, read_vstar
from stvg_plugin.data import AnnotationError, GroundingQuery

BENCHMARKS = benchmark_names()  # the built-in ones; benchmark_names() also lists those registered later


def default_protocol(name: str) -> str:
    """The metric protocol benchmark ``name``'s papers report (its spec's, else its task's default)."""
    from stvg_plugin.metrics import default_protocol as task_default_protocol

    spec = get_benchmark(name)
    return spec.protocol or task_default_protocol(spec.task)


def load_benchmark(
    name: str, annotations: str | os.PathLike, video_root: str | os.PathLike | None = None, **kw
) -> list[GroundingQuery]:
    """Read ``annotations`` in benchmark ``name``'s native format into unified queries.

    Common keywords: ``on_error="raise"|"skip"`` and ``skipped=<list to fill>``. Per benchmark:
    ``video_parts`` (hcstvg_v2), ``trajectories`` / ``vidor_dir`` (vidstg), ``probe`` (charades_sta),
    ``require_answer_vqa`` (vstar).
    """
    reader = get_benchmark(name).reader
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
    "BenchmarkSpec",
    "DataSource",
    "EntryRunner",
    "SkippedEntry",
    "benchmark_names",
    "benchmark_specs",
    "default_protocol",
    "duration_bucket",
    "get_benchmark",
    "load_benchmark",
    "read_charades_sta",
    "read_hcstvg",
    "read_unified",
    "read_vidstg",
    "read_vstar",
    "register_benchmark",
    "require_file",
    "unregister_benchmark",
    "write_charades_txt",
    "write_hcstvg",
    "write_vidstg",
]
