"""Read an lmms-eval run of the ``stvg_*`` tasks back as predictions (for ``stvg evaluate`` and FiftyOne).

Each line of ``<date>_samples_<task>.jsonl`` (written with ``--log_samples``) carries, besides
lmms-eval's own keys (``doc_id``, ``target``, ``filtered_resps``, ...), the per-sample value of every
metric of :func:`lmms_tasks.common.lmms_process_results`: one float per score, ``error`` / ``missing_video``
(the failure text / the missing path, or null) and ``queries``, the detail record: ``qid``, ``video``
and ``prediction`` (the exact ``GroundingPrediction.to_json()`` that was scored: ``span_frames``/``span_s``,
``boxes``, ``raw_text``, ``parse_failed``, ``error``).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from pathlib import Path

from lmms_tasks.common import DETAIL_METRIC
from stvg_plugin.data import AnnotationError, GroundingPrediction, iter_jsonl, write_jsonl


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


def main(argv: list[str] | None = None) -> int:
    """``python -m lmms_tasks.results OUTPUT_PATH TASK PREDICTIONS``: newest samples file -> predictions JSONL."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("output_path", help="the lmms-eval --output_path of the run")
    parser.add_argument("task", help="task name, e.g. stvg_synthetic")
    parser.add_argument("predictions", help="predictions JSONL to write")
    args = parser.parse_args(argv)
    found = find_samples(args.output_path, args.task)
    if not found:
        print(f"no *_samples_{args.task}.jsonl under {args.output_path} (was --log_samples given?)")
        return 1
    n = samples_to_predictions(found[-1], args.predictions)
    print(f"wrote {n} predictions from {found[-1]} to {args.predictions}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
