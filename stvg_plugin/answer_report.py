"""How text answers were read, per model family: the numbers that make "a better prompt helps" measurable.

For every prediction that carries a model's raw text (prompted and served backends, stock lmms-eval
models), grouped by ``extra["backend"]`` (``prompted:<family>``, ``served:<model>``; ``unknown``
without one): the share whose answer could not be parsed, and the share whose coordinates were not
in pixels of the original frame and had to be rescaled (relative, 0-1000, or pixels of a resized
input: the parser flags these ``coords_rescaled``). ``stvg evaluate`` adds it to ``summary.json``.
"""

from __future__ import annotations

from collections.abc import Iterable

from stvg_plugin.data import GroundingPrediction


def answer_report(predictions: Iterable[GroundingPrediction]) -> dict[str, dict[str, float | int]]:
    """``{family: {answers, parse_failed, parse_failure_rate, rescaled, rescaled_share}}`` over text answers."""
    counts: dict[str, list[int]] = {}
    for pred in predictions:
        if pred.raw_text is None or pred.error:
            continue
        backend = str(pred.extra.get("backend") or "unknown")
        family = backend.split(":", 1)[1] if backend.startswith("prompted:") else backend
        row = counts.setdefault(family, [0, 0, 0])
        row[0] += 1
        row[1] += int(bool(pred.parse_failed))
        row[2] += int("coords_rescaled" in (pred.extra.get("parse_flags") or []))
    return {
        family: {"answers": n, "parse_failed": failed, "parse_failure_rate": failed / n,
                 "rescaled": rescaled, "rescaled_share": rescaled / n}
        for family, (n, failed, rescaled) in sorted(counts.items())
    }


def format_answer_report(report: dict[str, dict]) -> list[str]:
    return [f"answers {family}: {r['answers']} text answers, {r['parse_failure_rate']:.1%} unparsed, "
            f"{r['rescaled_share']:.1%} with rescaled coordinates" for family, r in report.items()]
