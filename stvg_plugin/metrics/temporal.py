"""Temporal video grounding (Charades-STA style): IoU in seconds, R@1 IoU>=m, mIoU.

``parse_charades_answer`` reproduces lmms-eval 0.7.3 ``temporal_grounding_charades`` text parsing
(``lmms_eval/tasks/charades_sta/utils.py``: ``extract_time``), quirks included (metrics.md §4), so our
numbers equal lmms-eval's on the same model outputs. With ``lmms_compat`` (``stvg evaluate ...
protocol=tvg lmms_compat=true``) the raw text is always parsed and queries sharing a
``video>>>caption>>>timestamp`` key are merged, last one wins, as its submission dict does
(``temporal_grounding_process_results_generation``, ``_temporal_grounding_compute_metrics``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from stvg_plugin.data import AnnotationError, GroundingPrediction, GroundingQuery, frames_to_seconds
from stvg_plugin.metrics.protocols import ProtocolSpec, register_protocol
from stvg_plugin.util.box_ops import interval_iou

TVG_THRESHOLDS = (0.3, 0.5, 0.7)

# lmms-eval strips its own prompt example before parsing, so a model echoing it is not scored on it.
_ECHOED_PROMPT = "a specific example is : 20.8 - 30.0 seconds"
_KEYWORDS = ("starts", "ends", "happens in", "start time", "end time", "start", "end", "happen")
_CLOCK = r"\d{1,2}:\d{2}(?::\d{2})?"
_CLOCK_RANGE_RE = re.compile(rf"\b({_CLOCK})\s*[–-]\s*({_CLOCK})\b")
_NUMBER_RANGE_RE = re.compile(r"(\d+(?:\.\d+)?)\s*[–-]\s*(\d+(?:\.\d+)?)")
_NUMBER_RE = re.compile(r"\b(\d+(?:\.\d+)?)\b")
_CLOCK_RE = re.compile(rf"\b({_CLOCK})\b")
_SECONDS_RANGE_RE = re.compile(r"(\d+(?:\.\d+)?)\s*s?\s*[–-]\s*(\d+(?:\.\d+)?)\s*s?")


def _clock_to_seconds(text: str) -> float:
    parts = [float(x) for x in text.split(":")]
    if len(parts) == 3:
        return parts[0] * 3600 + parts[1] * 60 + parts[2]
    return parts[0] * 60 + parts[1]


def _pairs(values: list[float]) -> list[tuple[float, float]]:
    values = values[: len(values) // 2 * 2]
    return [(values[i], values[i + 1]) for i in range(0, len(values), 2)]


def parse_charades_answer(text: str) -> tuple[float, float] | None:
    """lmms-eval's Charades-STA answer parser -> ``(start_s, end_s)`` or ``None``.

    Quirks kept on purpose: every "to" becomes "-" (also inside words); sentences split on ``! ? \\n``
    only; keyword sentences preferred; strategies tried in order (clock ranges, ``a - b``, paired clock
    values, the first number of each sentence paired up, ``a s - b s``); only the first pair is kept
    and reversed pairs are swapped. Non-string input -> ``None``.
    """
    if not isinstance(text, str):
        return None
    paragraph = text.lower().replace(_ECHOED_PROMPT, "").replace("to", "-")
    sentences = re.split(r"[!?\n]", paragraph)
    candidates = [s for s in sentences if any(k in s for k in _KEYWORDS)] or sentences

    found: list[tuple[float, float]] = []
    for sentence in candidates:
        matches = _CLOCK_RANGE_RE.findall(sentence)
        if matches:
            found = [(_clock_to_seconds(a), _clock_to_seconds(b)) for a, b in matches]
            break
    if not found:
        for sentence in candidates:
            matches = _NUMBER_RANGE_RE.findall(sentence)
            if matches:
                found = [(float(a), float(b)) for a, b in matches]
                break
    if not found:
        clocks = [_clock_to_seconds(c) for s in candidates for c in _CLOCK_RE.findall(s)]
        found = _pairs(clocks)
    if not found:
        firsts = [float(m[0]) for s in candidates if (m := _NUMBER_RE.findall(s))]
        found = _pairs(firsts)
    if not found:
        for sentence in candidates:
            matches = _SECONDS_RANGE_RE.findall(sentence)
            if matches:
                found = [(float(a), float(b)) for a, b in matches]
                break
    if not found:
        return None
    a, b = found[0]
    return (a, b) if b > a else (b, a)


def seconds_iou(gt: Sequence[float], pred: Sequence[float]) -> float:
    """Charades / lmms-eval IoU: ``max(min(ends) - max(starts), 0) / (max(ends) - min(starts))``, 0 if <= 0."""
    return interval_iou(gt, pred)


def gt_seconds(q: GroundingQuery) -> tuple[float, float] | None:
    """The query's GT span in seconds (``span_s``, else ``span_frames / fps``)."""
    if q.span_s is not None:
        return (float(q.span_s[0]), float(q.span_s[1]))
    if q.span_frames is not None and q.fps:
        return frames_to_seconds(q.span_frames[0], q.span_frames[1], q.fps)
    return None


def pred_seconds(q: GroundingQuery, p: GroundingPrediction, parse_text: bool) -> tuple[float, float] | None:
    """Predicted span in seconds: the lmms-eval parser on ``raw_text`` when asked or when no span is given."""
    if parse_text and p.raw_text is not None:
        return parse_charades_answer(p.raw_text)
    if p.span_s is not None:
        a, b = float(p.span_s[0]), float(p.span_s[1])
        return (min(a, b), max(a, b))
    if p.span_frames is not None and q.fps:
        return frames_to_seconds(p.span_frames[0], p.span_frames[1], q.fps)
    if p.raw_text is not None:
        return parse_charades_answer(p.raw_text)
    return None


def score_tvg(
    queries: Sequence[GroundingQuery], preds: Sequence[GroundingPrediction | None], parse_text: bool = False
) -> list[dict]:
    """Per-query ``tIoU`` and ``R1@m`` (``>=``); an unreadable answer scores 0 and sets ``no_pair``."""
    rows = []
    for q, p in zip(queries, preds):
        gt = gt_seconds(q)
        if gt is None:
            raise AnnotationError("tvg query has neither span_s nor span_frames+fps", entry=f"qid {q.qid}")
        span = pred_seconds(q, p, parse_text) if p is not None else None
        iou = seconds_iou(gt, span) if span is not None else 0.0
        row = {"tIoU": iou}
        row.update({f"R1@{t}": float(iou >= t) for t in TVG_THRESHOLDS})
        row["pred_span_s"] = list(span) if span is not None else None
        row["no_pair"] = p is not None and span is None
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- registration


def _reads_text(p: GroundingPrediction, q: GroundingQuery, parse_text: bool) -> bool:
    """:func:`pred_seconds` reads ``raw_text`` when parsing text or as the fallback without a usable span."""
    return parse_text or (p.span_s is None and not (p.span_frames is not None and q.fps))


def _lmms_rows(idx: list[int], queries: Sequence[GroundingQuery], preds, rows, lmms_compat: bool) -> list[int]:
    """lmms-eval's tvg keys ``video>>>caption>>>span`` collapse duplicates (the last one wins)."""
    if not lmms_compat:
        return idx
    last: dict[tuple, int] = {}
    for i in idx:
        q = queries[i]
        last[(q.video, q.query, tuple(q.span_s) if q.span_s else tuple(q.span_frames or ()))] = i
    return sorted(last.values())


register_protocol(
    ProtocolSpec(
        "tvg",
        lambda qs, ps, ctx: score_tvg(qs, ps, parse_text=ctx.lmms_compat),
        lambda thresholds: [("tIoU", "mIoU")] + [(f"R1@{t}", f"R1@{t}") for t in TVG_THRESHOLDS],
        tasks=("tvg", "stvg"),
        default_for=("tvg",),
        reads_text=_reads_text,
        summary_rows=_lmms_rows,
        percent=True,
    )
)
