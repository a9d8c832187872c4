"""Readers of the official evaluators' own prediction files -> :class:`~stvg_plugin.data.GroundingPrediction`.

``stvg evaluate predictions=FILE predictions_format=...`` scores any of these with no conversion
script; ``auto`` detects the format where the file says it unambiguously (:func:`detect_format`).
One module per format:

* ``jsonl`` - the project's own predictions JSONL (``stvg predict``);
* ``vstar`` - a V-STaR results JSON (the annotation items plus ``answer_vqa`` / ``answer_temporal`` /
  ``answer_spatial`` [/ ``_2``] and optionally the judge's ``VQA_score``): :mod:`.vstar_results`;
* ``vue_stg`` - a VUE-STG (Vidi2) ``tubes.csv`` (``query_id,time_ms,x0,y0,x1,y1``): :mod:`.vue_stg_csv`;
* ``eval_hcvg`` - HC-STVG ``eval_hcvg.py`` JSON ``{video: {st_frame, ed_frame, bbox: {frame: xyxy}}}``:
  :mod:`.eval_hcvg`;
* ``tubedetr`` - TubeDETR's evaluator inputs ``{"predictions": {"<video>_<frame>": {"boxes": [...]}},
  "video_predictions": {video: {"sted": [s, e], "qtype": ...}}}``: :mod:`.tubedetr`;
* ``lmms_samples`` - lmms-eval ``--log_samples`` JSONL of the Charades-STA task: :mod:`.lmms_samples`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from stvg_plugin.data import AnnotationError, GroundingPrediction, GroundingQuery, StvgError, iter_predictions

PREDICTION_FORMATS = ("auto", "jsonl", "vstar", "vue_stg", "eval_hcvg", "tubedetr", "lmms_samples")
_PEEK_BYTES = 1 << 16


class FormatError(StvgError, ValueError):
    """The predictions file's format is unknown or cannot be told from its content."""


def detect_format(path: str | os.PathLike) -> str:
    """The format of ``path`` from its extension and first JSON value; raises if it is ambiguous."""
    p = Path(path)
    if p.suffix.lower() == ".csv":
        return "vue_stg"
    if p.suffix.lower() == ".jsonl":
        with open(p, encoding="utf-8") as fh:
            first = next((line for line in fh if line.strip()), "")
        if not first:
            return "jsonl"  # an empty predictions file: every query is missing
        try:
            obj = json.loads(first) if first else {}
        except json.JSONDecodeError:
            raise AnnotationError("first line is not JSON; pass predictions_format=...", p, "line 1") from None
        if isinstance(obj, dict) and "qid" in obj:
            return "jsonl"
        if isinstance(obj, dict) and ("doc_id" in obj or "filtered_resps" in obj or "resps" in obj):
            return "lmms_samples"
        raise FormatError(f"{p}: cannot tell the predictions format from line 1; pass predictions_format=...")
    with open(p, encoding="utf-8") as fh:
        head = fh.read(_PEEK_BYTES).lstrip()
    if head.startswith("["):
        if any(k in head for k in ('"answer_temporal"', '"answer_spatial"', '"answer_vqa"')):
            return "vstar"
    elif head.startswith("{"):
        if '"video_predictions"' in head:
            return "tubedetr"
        if '"st_frame"' in head and '"ed_frame"' in head:
            return "eval_hcvg"
        if '"qid"' in head:
            return "jsonl"
    raise FormatError(f"{p}: cannot tell the predictions format; pass predictions_format= one of "
                      f"{', '.join(PREDICTION_FORMATS[1:])}")


def read_predictions_file(
    path: str | os.PathLike, fmt: str = "auto", queries: Sequence[GroundingQuery] = ()
) -> Iterable[GroundingPrediction]:
    """Predictions of ``path`` in format ``fmt`` (``auto``: :func:`detect_format`), keyed by ``queries``' qids."""
    if fmt not in PREDICTION_FORMATS:
        raise FormatError(f"predictions_format must be one of {', '.join(PREDICTION_FORMATS)}, got {fmt!r}")
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt == "jsonl":
        return iter_predictions(path)
    if fmt == "vstar":
        from stvg_plugin.formats.vstar_results import read_vstar_results

        return read_vstar_results(path)
    if fmt == "vue_stg":
        from stvg_plugin.formats.vue_stg_csv import read_vue_stg_predictions

        return read_vue_stg_predictions(path)
    if fmt == "eval_hcvg":
        from stvg_plugin.formats.eval_hcvg import read_eval_hcvg

        return read_eval_hcvg(path)
    if fmt == "tubedetr":
        from stvg_plugin.formats.tubedetr import read_tubedetr

        return read_tubedetr(path, queries)
    from stvg_plugin.formats.lmms_samples import read_lmms_samples

    return read_lmms_samples(path, queries)
