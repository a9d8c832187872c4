"""The protocol registry: what the metric engine needs to know about one scoring protocol.

A protocol is one :class:`ProtocolSpec`, registered by the module that holds its scorer (``stvg.py``
registers the five TubeDETR-family protocols, ``temporal.py`` ``tvg``, ``vstar.py``, ``vue_stg.py``,
``rec.py``). :func:`stvg_plugin.metrics.evaluate` looks every protocol up here, so a new protocol
is one file that calls :func:`register_protocol` (docs/EXTENDING.md) - the engine has no list of
names. :func:`default_protocol` is the one answer to "which protocol when none is named".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from stvg_plugin.data import GroundingPrediction, GroundingQuery, StvgError
from stvg_plugin.util.registry import Registry

# The built-in protocol modules, imported the first time the registry is read; their protocols are
# listed in this order (error messages, the FiftyOne enum).
_BUILTIN_MODULES = tuple(f"stvg_plugin.metrics.{m}" for m in ("stvg", "vue_stg", "vstar", "temporal", "rec"))


class MetricsError(StvgError, ValueError):
    """A bad argument to the metric engine (unknown protocol, fill mode, threshold) or a clashing registration."""


@dataclass
class ScoringContext:
    """The options and the counters one :func:`evaluate` call hands to every scorer.

    ``other`` carries the protocol options (``vue_multi_boxes_policy``, ``vue_step_ms``,
    ``vstar_judge``) in, and the scorers' counts (``nan``, ``crash``, ``vstar_skipped``) out.
    """

    thresholds: Sequence[float] = (0.3, 0.5)
    box_fill: str = "none"
    lmms_compat: bool = False
    repair: bool = False
    stats: Any = None  # util.box_ops.BoxRepairStats
    counters: Any = None  # metrics.stvg.StvgCounters
    other: dict[str, Any] = field(default_factory=dict)
    vstar_accuracy: float | None = None


Scorer = Callable[[Sequence[GroundingQuery], Sequence["GroundingPrediction | None"], ScoringContext], list[dict]]


@dataclass(frozen=True)
class ProtocolSpec:
    """One protocol: how to score a group of queries and how to summarise their rows.

    * ``score(queries, predictions, context)`` - one dict per query (a prediction may be None:
      missing); with ``whole_rows`` the dicts are complete rows (:mod:`.rows`), else the engine adds
      ``qid`` / ``qtype`` / ``task`` / ``protocol`` in front and the :func:`.rows.row_tail` keys
      after (a metric dict may carry ``no_pair=True``: a prediction with nothing to score).
    * ``metric_names(thresholds)`` - the ``(per-query key, summary key)`` pairs; each summary value
      is the mean of its per-query values (``None`` skipped), also per ``qtype``.
    * ``tasks`` - the query tasks it can score; ``default_for`` - the tasks it scores by default
      (``protocol="auto"`` and :func:`default_protocol`).
    * ``reads_text(prediction, query, lmms_compat)`` / ``extra_keys`` - what of a prediction's
      ``raw_text`` / ``extra`` scoring reads (the engine drops the rest as it streams predictions).
    * ``summary_rows(indices, queries, predictions, rows, lmms_compat)`` - which rows the summary
      averages when not all (official evaluators that skip or merge entries).
    * ``secondary_names`` - more ``(row key, summary key)`` means; ``percent`` - also report each
      summary metric x100 as ``<key>_percent``; ``group_summary(rows, context)`` - extra summary keys.
    """

    name: str
    score: Scorer
    metric_names: Callable[[Sequence[float]], list[tuple[str, str]]]
    tasks: tuple[str, ...] = ("stvg",)
    default_for: tuple[str, ...] = ()
    whole_rows: bool = False
    reads_text: Callable[[GroundingPrediction, GroundingQuery, bool], bool] | None = None
    extra_keys: tuple[str, ...] = ()
    summary_rows: Callable[..., list[int]] | None = None
    secondary_names: tuple[tuple[str, str], ...] = ()
    percent: bool = False
    group_summary: Callable[[list[dict], ScoringContext], dict[str, Any]] | None = None


_PROTOCOLS: Registry[ProtocolSpec] = Registry(
    "protocol", MetricsError, _BUILTIN_MODULES, origin=lambda spec: getattr(spec.score, "__module__", None)
)
register_protocol = _PROTOCOLS.register
unregister_protocol = _PROTOCOLS.unregister
protocol_names = _PROTOCOLS.names  # built-ins first in their documented order, then the others as registered


def get_protocol(name: str) -> ProtocolSpec:
    """The spec of protocol ``name``; an unknown name raises :class:`MetricsError` listing the known ones."""
    spec = _PROTOCOLS.lookup(name)
    if spec is None:
        raise MetricsError(f"unknown protocol {name!r}; choose one of {protocol_names() + ('auto',)}")
    return spec


def default_protocol(task: str = "stvg") -> str:
    """The protocol that scores a query of ``task`` when none is named (an unknown task: the STVG default)."""
    specs = _PROTOCOLS.specs()
    for spec in specs:
        if task in spec.default_for:
            return spec.name
    for spec in specs:
        if "stvg" in spec.default_for:
            return spec.name
    raise MetricsError("no protocol is registered as the default for stvg queries")
