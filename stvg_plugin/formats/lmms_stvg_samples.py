"""lmms-eval ``--log_samples`` JSONL of the ``stvg_*`` tasks -> the predictions that were scored.

A format reader of the core, so both wrappers use it without importing each other: ``lmms_tasks``
writes these files (its ``process_results``), FiftyOne and ``stvg demo`` read them back.
(:mod:`.lmms_samples` reads the stock Charades-STA task's samples, which hold only raw text.)

Each line of ``<date>_samples_<task>.jsonl`` carries, besides lmms-eval's own keys (``doc_id``,
``target``, ``filtered_resps``, ...), the per-sample value of every metric of the task: one float per
score, ``error`` / ``missing_video`` (the failure text / the missing path, or null) and
:data:`DETAIL_METRIC`, the detail record: ``qid``, ``video`` and ``prediction`` (the exact
``GroundingPrediction.to_json()`` that was scored: ``span_frames``/``span_s``, ``boxes``, ``raw_text``,
``parse_failed``, ``error``).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from pathlib import Path

from stvg_plugin.data import AnnotationError, GroundingPrediction, iter_jsonl, write_jsonl

#: the metric whose per-sample value is the detail record (one home: ``lmms_tasks.common`` writes it)
DETAIL_METRIC = "queries"


def read_samples(path: str | os.PathLike) -> Iterator[GroundingPrediction]:
    """The scored prediction of every sample line (``qid`` set), in file order.

    A line without the ``prediction`` detail (not an ``stvg_*`` task, or a run logged without
    ``--log_samples``) raises :class:`AnnotationError` naming the file and line.
    """
    for lineno, obj in iter_jsonl(path):
        entry = f"line {lineno}"
        if isinstance(obj, dict) and isinstance(obj.get(DETAIL_METRIC), dict):
            obj = obj[DETAIL_METRIC]  # the detail record (older runs wrote its keys at the top level)
        if not isinstance(obj, dict) or not isinstance(obj.get("prediction"), dict):
            raise AnnotationError("no 'prediction' detail: not a samples file of an stvg_* task", path, entry)
        pred = GroundingPrediction.from_json(obj["prediction"], path, entry)
        if obj.get("qid") is not None and str(obj["qid"]) != pred.qid:
            raise AnnotationError(f"qid {obj['qid']!r} differs from the prediction's {pred.qid!r}", path, entry)
        yield pred


def find_samples(output_path: str | os.PathLike, task: str) -> list[Path]:
    """Samples files of ``task`` under an lmms-eval ``--output_path`` (any model sub-folder), oldest first."""
    pattern = os.path.join(glob.escape(str(output_path)), "**", f"*_samples_{task}.jsonl")
    return sorted((Path(p) for p in glob.glob(pattern, recursive=True)), key=lambda p: (p.name, str(p)))


def samples_to_predictions(samples_path: str | os.PathLike, predictions_path: str | os.PathLike) -> int:
    """Write a samples file as a predictions JSONL that ``stvg evaluate`` reads; returns the count."""
    return write_jsonl(predictions_path, read_samples(samples_path))


def newest_samples_to_predictions(output_path: str | os.PathLike, task: str,
                                  predictions_path: str | os.PathLike) -> tuple[Path, int] | None:
    """The newest samples file of ``task`` under ``output_path`` written as predictions JSONL:
    ``(samples file, count)``, or ``None`` when the run left no samples file (no ``--log_samples``)."""
    found = find_samples(output_path, task)
    if not found:
        return None
    return found[-1], samples_to_predictions(found[-1], predictions_path)
