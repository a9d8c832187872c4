"""The benchmark registry: one :class:`BenchmarkSpec` per benchmark, registered by its reader module.

A spec says how to read the benchmark (``reader``), which protocol its papers report, and where
its files are found (:class:`DataSource`: the environment variables behind ``conf/data/<name>.yaml``
and the lmms-eval ``stvg_*`` tasks). :func:`stvg_plugin.adapters.load_benchmark`, the ``stvg``
commands and ``lmms_tasks`` read it from here; tests check ``conf/data/`` and the task YAMLs
against it. Adding a benchmark is one reader module that calls :func:`register_benchmark`
(docs/EXTENDING.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from stvg_plugin.adapters._common import BenchmarkError
from stvg_plugin.data import GroundingQuery
from stvg_plugin.util.registry import Registry

# The built-in reader modules, imported on the first lookup, in the order the benchmarks are listed
# (``BENCHMARKS``, messages).
_BUILTIN_MODULES = tuple(
    f"stvg_plugin.adapters.{m}" for m in ("hcstvg", "vidstg", "charades", "vstar", "unified")
)

Reader = Callable[..., list[GroundingQuery]]


@dataclass(frozen=True)
class DataSource:
    """Where one configuration of a benchmark finds its files: environment variable names.

    ``name`` is the ``conf/data/<name>.yaml`` file; ``annotations_env`` names the annotation file, or
    a folder holding ``annotations_file`` when that is set; ``options_env`` maps extra reader
    keywords to the variables that give them (a file each, a folder for those in ``dir_options``); ``lmms_tasks`` maps each lmms-eval task reading this
    source to the ``qtype`` it keeps (None: all), grouped as ``lmms_group`` when set; ``what`` names
    the file in error messages.
    """

    name: str
    annotations_env: str
    videos_env: str | None = None
    annotations_file: str | None = None
    options_env: Mapping[str, str] = field(default_factory=dict)
    dir_options: tuple[str, ...] = ()
    lmms_tasks: Mapping[str, str | None] = field(default_factory=dict)
    lmms_group: str | None = None
    what: str = "annotation file"


@dataclass(frozen=True)
class BenchmarkSpec:
    """One benchmark: ``reader(annotations, video_root, **kw) -> [GroundingQuery]`` and its metadata.

    ``task`` is the query task its papers ground (its default protocol is
    :func:`stvg_plugin.metrics.default_protocol` of it) unless ``protocol`` names another;
    ``sources`` its :class:`DataSource` s; ``task_options`` fixed reader keywords the lmms-eval tasks
    pass; ``needs_one_option`` a message when none of the sources' ``options_env`` is set.
    """

    name: str
    reader: Reader
    task: str = "stvg"
    protocol: str | None = None
    sources: tuple[DataSource, ...] = ()
    task_options: Mapping[str, Any] = field(default_factory=dict)
    needs_one_option: str | None = None


_BENCHMARKS: Registry[BenchmarkSpec] = Registry(
    "benchmark", BenchmarkError, _BUILTIN_MODULES, origin=lambda spec: getattr(spec.reader, "__module__", None)
)


def canonical_name(name: str) -> str:
    """``"HCSTVG-v1"`` -> ``"hcstvg_v1"``."""
    return str(name).strip().lower().replace("-", "_")


register_benchmark = _BENCHMARKS.register
benchmark_specs = _BENCHMARKS.specs  # built-ins first in their documented order, then the others as registered
benchmark_names = _BENCHMARKS.names


def unregister_benchmark(name: str) -> None:
    """Remove benchmark ``name`` (tests, plugins that replace one)."""
    _BENCHMARKS.unregister(canonical_name(name))


def get_benchmark(name: str) -> BenchmarkSpec:
    """The spec of benchmark ``name`` (case and ``-`` / ``_`` ignored); unknown: one line listing the known ones."""
    spec = _BENCHMARKS.lookup(canonical_name(name))
    if spec is None:
        raise BenchmarkError(f"unknown benchmark {name!r}; known: {', '.join(benchmark_names())}")
    return spec
