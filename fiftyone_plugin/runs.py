"""Attach predictions made elsewhere (``stvg predict``, an lmms-eval run, another tool) as a run, joined on qid."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from stvg_plugin.data import GroundingPrediction

from .fields import _check_writable, _clear, _declare, write_predictions
from .labels import check_name
from .scoring import compare_runs, evaluate_grounding


def read_lmms_samples(path: str | os.PathLike) -> list[GroundingPrediction]:
    """Predictions of an lmms-eval ``--log_samples`` file of an ``stvg_*`` task (the core's format reader)."""
    from stvg_plugin.formats.lmms_stvg_samples import read_samples

    return list(read_samples(path))


def import_lmms_eval_results(view, samples_path: str | os.PathLike, run_name: str, **kw: Any) -> dict:
    """Attach an lmms-eval run's predictions (joined on ``qid``) as run ``run_name``; optionally evaluate
    it (eval key = ``run_name``) and write ``delta_vIoU_<run_name>_<compare_to>`` (see :func:`attach_predictions`)."""
    return attach_predictions(view, read_lmms_samples(samples_path), run_name, **kw)


def attach_predictions(
    view,
    predictions: Iterable[GroundingPrediction],
    run_name: str,
    *,
    gt_field: str = "gt",
    evaluate: bool = True,
    compare_to: str | None = None,
    protocol: str | None = None,
    tiou_thresh: float = 0.5,
    viou_thresh: float = 0.3,
) -> dict:
    """Attach predictions made elsewhere (``stvg predict``, lmms-eval, another tool) as run ``run_name``,
    joined on ``qid``; unknown and duplicate qids are counted, never written. Optionally evaluate the run
    (eval key = ``run_name``) and write ``delta_vIoU_<run_name>_<compare_to>``."""
    pf, g = _check_writable(view, run_name, gt_field)
    if compare_to is not None:
        check_name(compare_to, "run to compare to")
    preds = list(predictions)
    ds = view._dataset
    ids, qids, metas = view.values(["id", "qids", "metadata"])
    owner = {q: sid for sid, qs in zip(ids, qids) for q in qs or []}
    by_sample: dict[str, list[GroundingPrediction]] = {}
    unknown, seen = [], set()
    num_dup = 0
    for p in preds:
        sid = owner.get(p.qid)
        if sid is None:
            unknown.append(p.qid)
            continue
        if p.qid in seen:
            num_dup += 1
            continue
        seen.add(p.qid)
        by_sample.setdefault(sid, []).append(p)
    _declare(ds, pf)
    _clear(ds, ids, pf)
    meta_by_id = dict(zip(ids, metas))
    items = [(sid, meta_by_id[sid], ps) for sid, ps in by_sample.items()]
    for i in range(0, len(items), 64):
        write_predictions(ds, pf, items[i : i + 64])
    out: dict[str, Any] = {
        "run_name": run_name,
        "num_lines": len(preds),
        "num_matched": len(seen),
        "num_unknown_qids": len(unknown),
        "unknown_qids": unknown[:20],
        "num_duplicates": num_dup,
        "num_queries_without_prediction": sum(len(qs or []) for qs in qids) - len(seen),
    }
    if evaluate:
        out["evaluation"] = evaluate_grounding(
            view, run_name, run_name, gt_field=gt_field, protocol=protocol, tiou_thresh=tiou_thresh,
            viou_thresh=viou_thresh,
        )  # fmt: skip
    if compare_to:
        out["deltas"] = compare_runs(view, run_name, compare_to)
    return out
