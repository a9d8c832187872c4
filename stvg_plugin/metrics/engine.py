"""``evaluate`` / ``score_query``: match predictions to queries, run a protocol, summarise.

Per-query values are the single source of truth; every summary metric is their mean (``math.fsum``,
so the result does not depend on query order), skipping ``None`` (undefined) values. Predictions
may be any iterable (e.g. a generator over a JSONL file), read once and streamed: the first one per
qid is kept, reduced on arrival to what its protocol reads (``raw_text`` and ``extra`` are dropped
unless scoring uses them), and unknown or duplicate ones are only counted, so memory is bounded by
the queries and their per-query records, not by the size of the predictions file.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from operator import attrgetter, is_, is_not, itemgetter
from typing import Any

from stvg_plugin.data import AnnotationError, GroundingPrediction, GroundingQuery
from stvg_plugin.metrics.boxes import BOX_FILLS
from stvg_plugin.metrics.protocols import (
    MetricsError,
    ProtocolSpec,
    ScoringContext,
    default_protocol,
    get_protocol,
    protocol_names,
)
from stvg_plugin.metrics.rows import row_tail
from stvg_plugin.metrics.stvg import StvgCounters
from stvg_plugin.metrics.vue_stg import VUE_POLICIES
from stvg_plugin.util.box_ops import BoxRepairStats

PROTOCOLS = protocol_names()  # the built-in ones; protocol_names() also lists those registered later
AUTO = "auto"
TASK_PROTOCOL = {task: default_protocol(task) for task in ("stvg", "tvg", "rec")}
_MAX_LISTED_QIDS = 20


def metric_names(protocol: str, thresholds: Sequence[float] = (0.3, 0.5)) -> list[tuple[str, str]]:
    """``(per-query key, summary key)`` pairs a protocol reports."""
    return get_protocol(protocol).metric_names(thresholds)


@dataclass
class EvalResult:
    """``summary``: means and counts (fractions in [0, 1]); ``per_query``: one dict per query, in query order."""

    summary: dict[str, Any]
    per_query: list[dict[str, Any]] = field(default_factory=list)

    def to_table(self) -> str:
        """Fixed-width table of the summary: metric values as fractions and x100, then the counts."""
        lines = [f"{'metric':<32} {'value':>10} {'x100':>9}", "-" * 53]
        counts = []
        for key, val in self.summary.items():
            if (
                key.startswith(("num_", "boxes_"))
                or key.endswith(("num_queries", "num_rated"))
                or key in ("protocol", "unknown_qids", "repair")
            ):
                counts.append((key, val))
            elif key.endswith("_percent"):
                continue
            elif val is None:
                lines.append(f"{key:<32} {'n/a':>10}")
            else:
                lines.append(f"{key:<32} {val:>10.4f} {val * 100:>9.2f}")
        lines.append("-" * 53)
        for key, val in counts:
            if isinstance(val, list):
                val = ", ".join(map(str, val)) if val else "-"
            lines.append(f"{key:<32} {val!s:>20}")
        return "\n".join(lines)


def _as_prediction(p: Any, n: int) -> GroundingPrediction:
    if isinstance(p, GroundingPrediction):
        return p
    if isinstance(p, Mapping):
        return GroundingPrediction.from_json(p, entry=f"prediction {n}")
    raise AnnotationError(f"expected a GroundingPrediction or dict, got {type(p).__name__}", entry=f"prediction {n}")


def _compact(p: GroundingPrediction, name: str, q: GroundingQuery, parse_text: bool) -> GroundingPrediction:
    """``p`` without the payload protocol ``name`` never reads for ``q`` (``p`` itself if nothing to drop).

    What a scorer reads besides spans, boxes, ``parse_failed`` and ``error`` is declared by its spec
    (``ProtocolSpec.reads_text`` / ``extra_keys``): e.g. ``tvg`` reads ``raw_text`` when parsing text
    or without a usable span, ``rec`` without a predicted box, ``vstar`` its answer extras; the STVG
    protocols read neither.
    """
    text, extra = p.raw_text, p.extra
    if text is None and not extra:
        return p
    spec = get_protocol(name)
    if text is not None and not (spec.reads_text is not None and spec.reads_text(p, q, parse_text)):
        text = None
    if extra:
        extra = {k: extra[k] for k in spec.extra_keys if k in extra}
    return GroundingPrediction(
        qid=p.qid,
        span_frames=p.span_frames,
        span_s=p.span_s,
        boxes=p.boxes,
        raw_text=text,
        parse_failed=p.parse_failed,
        error=p.error,
        span_source=p.span_source,
        confidence=p.confidence,
        extra=extra,
    )


def _validate(
    protocol: str, thresholds: Sequence[float], box_fill: str, vue_multi_boxes_policy: str = "first",
    vue_step_ms: int = 1000,
) -> None:
    if protocol != AUTO:
        get_protocol(protocol)  # raises, naming the known ones
    if not (isinstance(vue_step_ms, int) and vue_step_ms > 0):
        raise MetricsError(f"vue_step_ms must be a positive integer, got {vue_step_ms!r}")
    if vue_multi_boxes_policy not in VUE_POLICIES:
        raise MetricsError(f"multi_boxes_policy must be one of {VUE_POLICIES}, got {vue_multi_boxes_policy!r}")
    if box_fill not in BOX_FILLS:
        raise MetricsError(f"box_fill must be one of {BOX_FILLS}, got {box_fill!r}")
    for t in thresholds:
        if not (isinstance(t, (int, float)) and 0 <= t <= 1):
            raise MetricsError(f"thresholds must be numbers in [0, 1], got {t!r}")


def _task_protocol(task: str, cache: dict[str, str]) -> str:
    """:func:`default_protocol` of ``task``, looked up once per task and run."""
    name = cache.get(task)
    if name is None:
        name = cache[task] = default_protocol(task)
    return name


def _resolve(protocol: str, q: GroundingQuery, cache: dict[str, tuple[str, bool]]) -> str:
    """The protocol that scores ``q`` (under "auto" its task's default), checked once per task and run."""
    found = cache.get(q.task)
    if found is None:
        name = default_protocol(q.task) if protocol == AUTO else protocol
        found = cache[q.task] = (name, q.task in get_protocol(name).tasks)
    if not found[1]:
        raise AnnotationError(f"protocol {found[0]!r} cannot score a {q.task!r} query", entry=f"qid {q.qid}")
    return found[0]


def _mean(values: Iterable[float | None]) -> float | None:
    vals = list(values)
    if not all(map(is_not, vals, repeat(None))):
        vals = [v for v in vals if v is not None]
    return math.fsum(vals) / len(vals) if vals else None


def evaluate(
    queries: Sequence[GroundingQuery],
    predictions: Iterable[GroundingPrediction | Mapping],
    protocol: str | None = None,
    thresholds: Sequence[float] = (0.3, 0.5),
    box_fill: str = "none",
    lmms_compat: bool = False,
    repair: bool = False,
    vstar_accuracy: float | None = None,
    vue_multi_boxes_policy: str = "first",
    vstar_judge: Any = None,
    vue_step_ms: int = 1000,
) -> EvalResult:
    """Score ``predictions`` against ``queries`` with one protocol (``"auto"``: by each query's task;
    None: :func:`~stvg_plugin.metrics.protocols.default_protocol`).

    A query without a prediction scores 0 and counts in ``num_missing``; a prediction for an unknown
    qid is counted (``num_unknown_qids``, first 20 in ``unknown_qids``), never scored; a second
    prediction for a qid is ignored and counted (``num_duplicate_predictions``, first one wins as in
    TubeDETR). ``lmms_compat`` (tvg only): parse ``raw_text`` with lmms-eval's Charades parser and
    merge queries with the same (video, caption, GT span) as lmms-eval's submission dict does (last
    one wins) - then the summary is no longer the plain mean of ``per_query``.

    Every protocol reproduces its official evaluator on any input that evaluator accepts, quirks
    included (docs/PROTOCOLS.md). ``repair`` (off by default, reported in the summary as ``repair``)
    turns on the project's own fixes, which no official evaluator applies: predicted boxes with
    swapped corners are put in order and NaN / zero-area ones rejected (counted in ``boxes_*``), and
    reversed predicted frame spans are swapped (``num_repaired_spans``). The one deliberate
    difference from the officials: where one crashes (a missing prediction or frame in TubeDETR /
    STCAT), the query or frame scores 0 and is counted (``num_missing``, ``num_crash_scored_zero``).
    STCAT / CG-STVG / LLaVA_Next_STVG leave a query without prediction out of their means (their
    loops run over the predictions), so those queries are counted in ``num_missing`` but not averaged.
    V-STaR: ``vstar_judge(question, gt_answer, candidate) -> 0..3`` rates answers that carry no
    ``vqa_score`` (:func:`stvg_plugin.metrics.vstar_judge.make_judge`); ``vstar_accuracy`` overrides the
    accuracy. VUE-STG: ``vue_multi_boxes_policy`` is ``first`` / ``last`` / ``union``; ``vue_step_ms`` the time bin.
    """
    protocol = default_protocol() if protocol is None else protocol
    _validate(protocol, thresholds, box_fill, vue_multi_boxes_policy, vue_step_ms)
    # Scoring allocates a few containers per query and no reference cycles; left on, the cyclic GC
    # keeps re-walking the caller's queries and box dicts (~20 % of the time at 10k queries).
    # Reference counting still frees everything as usual; the collector's state is restored after.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _evaluate(
            queries, predictions, protocol, thresholds, box_fill, lmms_compat, repair, vstar_accuracy,
            vue_multi_boxes_policy, vstar_judge, vue_step_ms,
        )
    finally:
        if gc_was_enabled:
            gc.enable()


def _evaluate(
    queries, predictions, protocol, thresholds, box_fill, lmms_compat, repair=False, vstar_accuracy=None,
    vue_multi_boxes_policy="first", vstar_judge=None, vue_step_ms=1000,
) -> EvalResult:
    queries = list(queries)
    index = dict(zip(map(attrgetter("qid"), queries), range(len(queries))))
    if len(index) != len(queries):  # name the first duplicate
        index = {}
        for i, q in enumerate(queries):
            if q.qid in index:
                raise AnnotationError(f"duplicate qid {q.qid!r} in queries", entry=f"query {i}")
            index[q.qid] = i
    # streamed: only the first prediction per known qid is kept, compacted to what scoring reads
    preds: list[GroundingPrediction | None] = [None] * len(queries)
    task_protocols: dict[str, str] = {}  # protocol="auto": each task's default
    unknown: list[str] = []
    num_unknown = num_duplicates = 0
    for n, raw in enumerate(predictions):
        p = raw if type(raw) is GroundingPrediction else _as_prediction(raw, n)
        i = index.get(p.qid)
        if i is None:
            num_unknown += 1
            if len(unknown) < _MAX_LISTED_QIDS:
                unknown.append(p.qid)
        elif preds[i] is not None:
            num_duplicates += 1
        elif p.raw_text is None and not p.extra:
            preds[i] = p
        else:
            q = queries[i]
            name = protocol if protocol != AUTO else _task_protocol(q.task, task_protocols)
            preds[i] = _compact(p, name, q, lmms_compat)

    if protocol != AUTO and {q.task for q in queries} <= set(get_protocol(protocol).tasks):
        names = [protocol] * len(queries)  # every query is scorable: no per-query resolution needed
    else:
        checked: dict[str, tuple[str, bool]] = {}
        names = [_resolve(protocol, q, checked) for q in queries]
    groups: dict[str, list[int]] = {}
    if len(set(names)) == 1:
        groups[names[0]] = list(range(len(names)))
    else:
        for i, name in enumerate(names):
            groups.setdefault(name, []).append(i)
    ctx = ScoringContext(
        thresholds, box_fill, lmms_compat, repair, BoxRepairStats(), StvgCounters(),
        {"vue_multi_boxes_policy": vue_multi_boxes_policy, "vstar_judge": vstar_judge, "vue_step_ms": vue_step_ms},
        vstar_accuracy,
    )
    stats, counters, other = ctx.stats, ctx.counters, ctx.other
    specs = {name: get_protocol(name) for name in groups}
    rows: list[dict | None] = [None] * len(queries)
    for name, idx in groups.items():
        if len(idx) == len(queries):  # one group: idx is every query, in order
            rows = specs[name].score(queries, preds, ctx)
            continue
        scored = specs[name].score([queries[i] for i in idx], [preds[i] for i in idx], ctx)
        for i, r in zip(idx, scored):
            rows[i] = r

    if len(groups) == 1 and specs[names[0]].whole_rows:
        per_query = rows  # the STVG scorer returns whole rows (see metrics/rows.py)
    else:
        per_query = []
        for q, p, name, r in zip(queries, preds, names, rows):
            if specs[name].whole_rows:
                per_query.append(r)
                continue
            tail = row_tail(p, r.pop("no_pair", False))
            per_query.append({"qid": q.qid, "qtype": q.qtype, "task": q.task, "protocol": name, **r, **tail})

    summary: dict[str, Any] = {"protocol": protocol if len(groups) != 1 else next(iter(groups), protocol)}
    merged = 0
    for name, idx in groups.items():
        prefix = f"{name}_" if len(groups) > 1 else ""
        spec = specs[name]
        chosen = spec.summary_rows(idx, queries, preds, per_query, lmms_compat) if spec.summary_rows else idx
        merged += len(idx) - len(chosen)
        chosen_rows = per_query if len(chosen) == len(per_query) else [per_query[i] for i in chosen]
        summary.update(_summarise(spec, chosen_rows, thresholds, prefix))
        if spec.group_summary is not None:
            group_rows = per_query if len(idx) == len(per_query) else [per_query[i] for i in idx]
            summary.update({prefix + k: v for k, v in spec.group_summary(group_rows, ctx).items()})
    num_nan = counters.nan_queries + other.get("nan", 0)
    summary.update(
        {
            "num_queries": len(queries),
            "num_missing": list(map(is_, preds, repeat(None))).count(True),  # no dataclass __eq__ calls
            "num_unknown_qids": num_unknown,
            "unknown_qids": unknown,
            "num_duplicate_predictions": num_duplicates,
            "num_parse_failed": list(map(itemgetter("parse_failed"), per_query)).count(True),
            "num_errors": list(map(is_not, map(itemgetter("error"), per_query), repeat(None))).count(True),
            "num_no_span": counters.no_span,
            "num_gt_frames_without_box": counters.gt_frames_without_box,
            "num_reversed_spans": counters.reversed_spans,
            "num_crash_scored_zero": other.get("crash", 0),
            "repair": bool(repair),
            **stats.as_dict(),
        }
    )
    if repair:
        summary["num_repaired_spans"] = counters.repaired_spans
    if other.get("vstar_skipped"):
        summary["num_vstar_skipped_no_answer_vqa"] = other["vstar_skipped"]
    if lmms_compat:
        summary["num_merged_duplicate_keys"] = merged
    for key, val in list(summary.items()):
        if isinstance(val, float) and math.isnan(val):  # defensive: never report NaN silently
            summary[key] = None
            num_nan += 1
    summary["num_nan"] = num_nan
    return EvalResult(summary=summary, per_query=per_query)


def _summarise(spec: ProtocolSpec, rows: list[dict], thresholds: Sequence[float], prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    names = spec.metric_names(thresholds)
    *columns, row_qtypes = _columns(rows, [key for key, _ in names] + ["qtype"])
    for (_key, skey), column in zip(names, columns):
        out[prefix + skey] = _mean(column)
    for key, skey in spec.secondary_names:
        out[prefix + skey] = _mean([r.get(key) for r in rows])
    if spec.percent:
        for _key, skey in names:
            val = out[prefix + skey]
            out[prefix + skey + "_percent"] = val * 100 if val is not None else None
    qtypes = sorted(set(row_qtypes) - {None})
    for qt in qtypes:
        sub = [r for r in rows if r.get("qtype") == qt]
        out[f"{prefix}{qt}_num_queries"] = len(sub)
        for key, skey in names:
            out[f"{prefix}{qt}_{skey}"] = _mean([r.get(key) for r in sub])
    return out


def _columns(rows: list[dict], keys: list[str]) -> list[list]:
    """``[r.get(key) for r in rows]`` for every key, reading each row once when all rows have all keys."""
    if len(keys) > 1 and rows:
        try:
            return [list(column) for column in zip(*map(itemgetter(*keys), rows))]
        except KeyError:
            pass
    return [list(map(dict.get, rows, repeat(key))) for key in keys]


def score_query(
    query: GroundingQuery,
    prediction: GroundingPrediction | Mapping | None = None,
    protocol: str | None = None,
    thresholds: Sequence[float] = (0.3, 0.5),
    box_fill: str = "none",
    repair: bool = False,
) -> dict[str, Any]:
    """One query's row of :func:`evaluate` (identical numbers; ``None`` prediction = missing)."""
    preds = [prediction] if prediction is not None else []
    result = evaluate([query], preds, protocol, thresholds, box_fill, repair=repair)
    return result.per_query[0]
