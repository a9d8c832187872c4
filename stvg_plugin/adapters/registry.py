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

# The built-in reader modules, in the order the benchmarks are listed (``BENCHMARKS``, messages).
_BUILTIN_MODULES = tuple(
    f"stvg_plugin.adapters.{m}" for m in ("hcstvg", "vidstg", "charades", "vstar", "unified")
)

Reader = Callable[..., list[GroundingQuery]]


@dataclass(frozen=True)
class DataSource:
    """Where one configuration of a benchmark finds its files: environment variable names.

    ``name`` is the ``conf/data/<name>.yaml`` file; ``annotations_env`` names the annotation file, or
    a folder holding ``annotations_file`` when that is set; ``options_env`` maps extra reader
    keywords to the variables that give them; ``lmms_tasks`` maps each lmms-eval task reading this
    source to the ``qtype`` it keeps (None: all), grouped as ``lmms_group`` when set; ``what`` names
    the file in error messages.
    """

    name: str
    annotations_env: str
    videos_env: str | None = None
    annotations_file: str | None = None
    options_env: Mapping[str, str] = field(default_factory=dict)
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


_REGISTRY: dict[str, BenchmarkSpec] = {}


def canonical_name(name: str) -> str:
    """``"HCSTVG-v1"`` -> ``"hcstvg_v1"``."""
    return str(name).strip().lower().replace("-", "_")


def register_benchmark(spec: BenchmarkSpec) -> BenchmarkSpec:
    """Add ``spec`` (a taken name is an error: unregister it first)."""
    if _REGISTRY.get(spec.name, spec) is not spec:
        raise BenchmarkError(f"benchmark {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def unregister_benchmark(name: str) -> None:
    """Remove benchmark ``name`` (tests, plugins that replace one)."""
    _REGISTRY.pop(canonical_name(name), None)


def _rank(spec: BenchmarkSpec) -> int:
    module = getattr(spec.reader, "__module__", None)
    return _BUILTIN_MODULES.index(module) if module in _BUILTIN_MODULES else len(_BUILTIN_MODULES)


def benchmark_specs() -> list[BenchmarkSpec]:
    """Every registered benchmark: the built-ins in their documented order, then the others as registered."""
    return sorted(_REGISTRY.values(), key=_rank)


def benchmark_names() -> tuple[str, ...]:
    """The names :func:`get_benchmark` accepts (also those registered after import)."""
    return tuple(spec.name for spec in benchmark_specs())


def get_benchmark(name: str) -> BenchmarkSpec:
    """The spec of benchmark ``name`` (case and ``-`` / ``_`` ignored); unknown: one line listing the known ones."""
    spec = _REGISTRY.get(canonical_name(name))
    if spec is None:
        raise BenchmarkError(f"unknown benchmark {name!r}; known: {', '.join(benchmark_names())}")
    return spec
