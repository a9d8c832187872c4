"""V-STaR results JSON (the file ``eval.py`` reads) -> predictions.

The file is the annotation list with the model's answers added: ``answer_vqa`` ("what"),
``answer_temporal`` / ``answer_spatial`` (chain 1), ``answer_temporal_2`` / ``answer_spatial_2``
(chain 2), and, once judged, ``VQA_score`` (``eval.py`` writes it into its metrics JSON). Answers
are kept exactly as written (strings stay strings) because the scorer reads them the official way.
qids are ``f"{vid}_{index}"`` as in :mod:`stvg_plugin.adapters.vstar`, so the same file also serves as
the annotations (read with ``require_answer_vqa=False``: the skip is the scorer's).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping

from stvg_plugin.adapters._common import load_json_file
from stvg_plugin.data import AnnotationError, GroundingPrediction

ANSWER_FIELDS = ("answer_vqa", "answer_temporal", "answer_spatial", "answer_temporal_2", "answer_spatial_2")


def read_vstar_results(path: str | os.PathLike) -> Iterator[GroundingPrediction]:
    raw = load_json_file(path)
    if not isinstance(raw, list):
        raise AnnotationError(f"expected a JSON list of V-STaR items, got {type(raw).__name__}", path)
    for index, item in enumerate(raw):
        if not isinstance(item, Mapping) or not isinstance(item.get("vid"), str):
            raise AnnotationError("item is not an object with a string 'vid'", path, f"index {index}")
        extra = {k: item[k] for k in ANSWER_FIELDS if k in item}
        extra["answer_vqa"] = item.get("answer_vqa")  # absent = empty: eval.py skips the item either way
        score = item.get("VQA_score")
        if isinstance(score, int) and not isinstance(score, bool):
            extra["vqa_score"] = score
        yield GroundingPrediction(qid=f"{item['vid']}_{index}", extra=extra)
