"""V-STaR scoring as ``V-STaR-Bench/V-STaR`` ``eval.py`` does it (metrics.md §3, docs/PROTOCOLS.md).

Quirks reproduced, with the ``eval.py`` line: an item whose ``answer_vqa`` is absent or empty is
skipped before any score (l.214) but stays in the overall accuracy's denominator ``len(data)``
(l.339, l.399); "when" answers: falsy -> 0 (l.69), strings read as Python literals (l.75, here by a
safe parser, :mod:`~stvg_plugin.metrics.literal`), only a list/tuple of two int/float (bool
included) scores (l.80); IoU ``max(0, min(ends) - max(starts)) / (max(ends) - min(starts))``, 0 if the
union is <= 0. "Where": an empty answer scores 0 (l.128); the loop runs over the GT box list, so
duplicate timestamps count twice (l.134); keys are exact strings ``str(timestamp)`` (``"3.0"`` does
not match ``3``); a GT key absent from the answer scores 0; one box or a list of boxes, best IoU; a
box of the wrong length scores 0 alone, but a non-number inside zeroes the whole frame (the bare
``except`` of l.123); an item without GT boxes scores mIoU / AP 0 and is averaged (l.148). "What":
a judge rating 0-3, ``int(reply)`` else -1; correct = rating >= 2; -1 counts as 0 in the average
score. AM / LGM per chain (l.378-384); LGM is undefined (None here; the official raises) when a
mean reaches 1. Per duration / domain the denominator is the rated items (l.400-403). Combined
rates: rating >= 2, tIoU >= 0.3, mIoU >= 0.1 (l.300-331). Thresholds use ``>=``.
Where the official raises (a string "where" answer indexed by a key, l.137), the chain scores 0 and
is counted in ``num_crash_scored_zero``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from stvg_plugin.data import AnnotationError, GroundingPrediction, GroundingQuery, frame_seconds
from stvg_plugin.metrics.literal import parse_number_pair
from stvg_plugin.metrics.protocols import ProtocolSpec, register_protocol
from stvg_plugin.util.box_ops import interval_iou, reference_box_iou

VSTAR_TIOU_THRESHOLDS = (0.3, 0.5, 0.7)
VSTAR_AP_THRESHOLDS = (0.1, 0.3, 0.5, 0.7, 0.9)


def vstar_temporal_answer(answer: Any) -> list | tuple | None:
    """A "when" answer as V-STaR's ``calculate_temporal_iou`` reads it -> the ``[s, e]`` pair, else None.

    Falsy -> None; a string is read as a Python literal (:func:`parse_number_pair`, a safe parser that
    accepts what ``ast.literal_eval`` would); the result must be a list/tuple of exactly two
    ``int``/``float`` (``bool`` included). ``"from 4 to 8 seconds"``, ``"3-5"`` and ``["4", "8"]``
    all give None (score 0), as officially.
    """
    if not answer:
        return None
    if isinstance(answer, str):
        return parse_number_pair(answer)
    if isinstance(answer, (list, tuple)) and len(answer) == 2 and all(isinstance(x, (int, float)) for x in answer):
        return answer
    return None


def vstar_tiou(gt: Sequence[float], pred: Any) -> float:
    """``max(0, min(ends) - max(starts)) / (max(ends) - min(starts))``, 0 if the union is <= 0 or the answer unread.

    The min/max argument order is V-STaR's (GT first), so NaN answers give its values too.
    """
    span = vstar_temporal_answer(pred)
    if span is None:
        return 0.0
    return interval_iou(gt, span, nan_scores_zero=True)


def _box_iou_official(gt: Sequence[float], box: Any) -> float:
    """V-STaR ``compute_iou``: 0 unless a list/tuple of 4; plain arithmetic (may raise on non-numbers)."""
    if not isinstance(box, (list, tuple)) or len(box) != 4:
        return 0.0
    iou = reference_box_iou(gt, box)
    return iou if iou is not None else 0.0


def _frame_iou_official(gt: Sequence[float], cand: Any) -> float:
    """V-STaR ``calculate_bbox_iou``: best IoU over the candidate box(es); any error zeroes the frame.

    One box ``[x0, y0, x1, y1]`` (first item a number, length 4) or a list of boxes; a malformed box
    (not 4 items) scores 0 on its own, but a box whose arithmetic fails (a string or None inside)
    raises inside the official ``try``, which returns 0 for the whole frame.
    """
    try:
        if not cand:
            return 0.0
        if isinstance(cand[0], (int, float)) and len(cand) == 4:
            cand = [cand]
        return max(_box_iou_official(gt, b) for b in cand)
    except Exception:  # noqa: BLE001 - the official catches everything here
        return 0.0


class VstarCrash(Exception):
    """The official evaluator would stop here (e.g. a string "where" answer indexed by a timestamp key)."""


def vstar_spatial_ious(gt_boxes: Any, pred_boxes: Any) -> list[float]:
    """Per GT box (a ``[(key, xyxy)]`` list, or a ``{key: xyxy}`` mapping), V-STaR's IoU.

    ``calculate_spatial_metrics``: an empty answer gives no IoUs at all (the caller scores 0); a key
    ``str(timestamp)`` absent from the answer scores 0; duplicate GT timestamps each count. Raises
    :class:`VstarCrash` where the official would raise (an answer that supports ``in`` but not ``[key]``).
    """
    items = list(gt_boxes.items()) if isinstance(gt_boxes, Mapping) else list(gt_boxes)
    ious = []
    for key, gt in items:
        key = str(key)
        try:
            present = key in pred_boxes
            cand = pred_boxes[key] if present else None
        except Exception as exc:  # noqa: BLE001 - outside the official try: it would crash
            raise VstarCrash(f"'where' answer of type {type(pred_boxes).__name__} cannot be read by key") from exc
        ious.append(_frame_iou_official(gt, cand) if present else 0.0)
    return ious


def vstar_spatial_metrics(gt_boxes: Any, pred_boxes: Any) -> tuple[list[float], float]:
    """``(AP@[.1,.3,.5,.7,.9], mIoU)`` of one answer: empty answer or no GT box -> zeros (counted)."""
    if not pred_boxes:
        return [0.0] * len(VSTAR_AP_THRESHOLDS), 0.0
    ious = vstar_spatial_ious(gt_boxes, pred_boxes)
    if not ious:
        return [0.0] * len(VSTAR_AP_THRESHOLDS), 0.0
    return [sum(v >= m for v in ious) / len(ious) for m in VSTAR_AP_THRESHOLDS], math.fsum(ious) / len(ious)


def vstar_judge_score(response: Any) -> int:
    """The judge's reply -> its 0-3 rating as ``eval.py`` reads it: ``int(reply)``, else -1 (unparsable)."""
    try:
        return int(response)
    except (ValueError, TypeError, OverflowError):
        return -1


VSTAR_JUDGE_SYSTEM_PROMPT = (
    "You evaluate a candidate answer against the correct (groundtruth) answer to a question. Rate only "
    "their semantic similarity, ignoring grammar, as one integer: 0 = no similarity (entirely incorrect), "
    "1 = low similarity (largely incorrect), 2 = high similarity (largely correct), 3 = complete similarity "
    "(entirely correct). Reply with a single integer: 0, 1, 2 or 3."
)
VSTAR_JUDGE_USER_TEMPLATE = "Question: {question}\nGroundtruth answer: {answer}\nCandidate answer: {candidate}\nYour response: "


def _chain_metrics(acc: float | None, tiou: float | None, viou: float | None) -> tuple[float | None, float | None]:
    """(AM, LGM) of one chain; None where an input is missing or LGM's log(1 - x) is undefined (x >= 1),
    which makes the official raise."""
    if acc is None or tiou is None or viou is None:
        return None, None
    am = (acc + tiou + viou) / 3
    if max(acc, tiou, viou) >= 1:
        return am, None
    return am, -(math.log(1 - acc) + math.log(1 - tiou) + math.log(1 - viou)) / 3


def _mean_or_none(values: list) -> float | None:
    vals = [v for v in values if v is not None]
    return math.fsum(vals) / len(vals) if vals else None


def _pair_mean(a: float | None, b: float | None) -> float | None:
    return (a + b) / 2 if a is not None and b is not None else None


def vstar_group_report(rows: Sequence[Mapping], total: int, accuracy: float | None = None) -> dict[str, Any]:
    """``print_stats`` of ``eval.py`` for one set of rows: accuracy, AM / LGM per chain, mAM / mLGM, combined rates.

    ``total`` is its denominator for the accuracy and the combined rates (overall: every item of the
    file, skipped ones included; per domain / duration: the rated items). ``accuracy`` overrides the
    judged one (without a judge, pass it in). Combined rates ("VQA & Temp" ...) need the ratings.
    """
    rated = [r for r in rows if not r.get("skipped")]
    scores = [r.get("vqa_score") for r in rated]
    judged = bool(rated) and all(s is not None for s in scores)
    out: dict[str, Any] = {"num_rated": len(rated)}
    acc = accuracy
    if judged:
        all_rating = [s if s != -1 else 0 for s in scores]
        valid = [s for s in scores if s != -1]
        out["vqa_avg_all_score"] = math.fsum(all_rating) / len(all_rating)
        out["vqa_avg_valid_score"] = math.fsum(valid) / len(valid) if valid else 0.0
        if acc is None:
            acc = sum(s >= 2 for s in scores) / total if total else None
    out["vqa_accuracy"] = acc
    means = {}
    for chain in ("", "_2"):
        means["t" + chain] = _mean_or_none([r.get("tIoU" + chain) for r in rated])
        means["v" + chain] = _mean_or_none([r.get("vIoU" + chain) for r in rated])
    am1, lgm1 = _chain_metrics(acc, means["t"], means["v"])
    am2, lgm2 = _chain_metrics(acc, means["t_2"], means["v_2"])
    out.update({"AM1": am1, "AM2": am2, "mAM": _pair_mean(am1, am2)})
    out.update({"LGM1": lgm1, "LGM2": lgm2, "mLGM": _pair_mean(lgm1, lgm2)})
    for chain, label in (("", "chain1"), ("_2", "chain2")):
        has_chain = any(r.get("tIoU" + chain) is not None for r in rated)
        for name, need in (("VQA&Temp", "qt"), ("VQA&Spat", "qs"), ("Temp&Spat", "ts"), ("VQA&Temp&Spat", "qts")):
            if ("q" in need and not judged) or not has_chain or not total:
                out[f"{name}_{label}"] = None
                continue
            hits = 0
            for r, score in zip(rated, scores):
                t, v = r.get("tIoU" + chain) or 0.0, r.get("vIoU" + chain) or 0.0
                ok = ("q" not in need or score >= 2) and ("t" not in need or t >= 0.3) and ("s" not in need or v >= 0.1)
                hits += ok
            out[f"{name}_{label}"] = hits / total
    return out


def vstar_report(rows: Sequence[Mapping], accuracy: float | None = None) -> dict[str, Any]:
    """The whole ``eval.py`` report: overall (denominator = every item), then per duration and domain."""
    out = {f"vstar_{k}": v for k, v in vstar_group_report(rows, len(rows), accuracy).items()}
    for field_name, label in (("duration", "duration"), ("domain", "domain")):
        groups: dict[str, list] = {}
        for r in rows:
            if not r.get("skipped") and r.get(field_name) is not None:
                groups.setdefault(str(r[field_name]), []).append(r)
        for value, sub in groups.items():
            rep = vstar_group_report(sub, len(sub), None)
            rep["m_tIoU"] = _mean_or_none([r.get("tIoU") for r in sub])
            rep["m_vIoU"] = _mean_or_none([r.get("vIoU") for r in sub])
            rep["m_tIoU_2"] = _mean_or_none([r.get("tIoU_2") for r in sub])
            rep["m_vIoU_2"] = _mean_or_none([r.get("vIoU_2") for r in sub])
            out.update({f"{label}_{value}_{k}": v for k, v in rep.items()})
    return out


def vstar_chain_scores(acc: float, tiou: float, viou: float) -> dict[str, float]:
    """AM = arithmetic mean; LGM = -mean(log(1 - x)) of (Acc, m_tIoU, m_vIoU), fractions.

    A value of exactly 1 makes the reference raise (log 0); here LGM is then ``inf``.
    """
    vals = (acc, tiou, viou)
    am = sum(vals) / 3
    lgm = math.inf if any(v >= 1 for v in vals) else -sum(math.log(1 - v) for v in vals) / 3
    return {"AM": am, "LGM": lgm}


def vstar_summary(acc: float, chain1: tuple[float, float], chain2: tuple[float, float]) -> dict[str, float]:
    """AM1/AM2/mAM and LGM1/LGM2/mLGM from the "what" accuracy and each chain's (m_tIoU, m_vIoU)."""
    c1, c2 = vstar_chain_scores(acc, *chain1), vstar_chain_scores(acc, *chain2)
    return {
        "AM1": c1["AM"],
        "AM2": c2["AM"],
        "mAM": (c1["AM"] + c2["AM"]) / 2,
        "LGM1": c1["LGM"],
        "LGM2": c2["LGM"],
        "mLGM": (c1["LGM"] + c2["LGM"]) / 2,
    }


def _time_key(t: float) -> str:
    """Whole seconds print like V-STaR's integer GT keys (``3``), others as Python floats."""
    return str(int(t)) if float(t).is_integer() else str(t)


def gt_boxes_by_time(q: GroundingQuery) -> list[tuple[str, list[float]]]:
    """GT boxes as V-STaR iterates them: ``(str(timestamp), xyxy)`` in file order, duplicates kept.

    From ``extra["vstar_gt_boxes"]`` (the adapter's list), else ``extra["boxes_by_time"]``, else frame / fps.
    """
    listed = q.extra.get("vstar_gt_boxes")
    if isinstance(listed, (list, tuple)):
        return [(str(k), list(b)) for k, b in listed]
    stored = q.extra.get("boxes_by_time")
    if isinstance(stored, Mapping):
        return [(str(k), list(v)) for k, v in stored.items()]
    if not q.fps:
        raise AnnotationError("vstar query needs extra['boxes_by_time'] or fps", entry=f"qid {q.qid}")
    return [(_time_key(frame_seconds(f, q.fps)), list(b)) for f, b in sorted(q.boxes.items())]


def pred_boxes_by_time(q: GroundingQuery, p: GroundingPrediction, chain: str = "") -> Any:
    """The "where" answer: ``extra["answer_spatial" + chain]`` as given (a V-STaR results file), else
    ``extra["boxes_by_time"]``, else the frame-keyed boxes under ``frame / fps`` keys (chain 1 only)."""
    if "answer_spatial" + chain in p.extra:
        return p.extra["answer_spatial" + chain]
    if chain:
        return None
    stored = p.extra.get("boxes_by_time")
    if isinstance(stored, Mapping):
        return {str(k): v for k, v in stored.items()}
    if not q.fps:
        return {}
    return {_time_key(frame_seconds(f, q.fps)): list(b) for f, b in p.boxes.items()}


def _chain(q: GroundingQuery, p: GroundingPrediction, gt_boxes: list, chain: str, other: dict) -> dict | None:
    """One chain's "when" / "where" scores of one answer (None: chain 2 absent from the prediction)."""
    t_key, s_key = "answer_temporal" + chain, "answer_spatial" + chain
    if chain and t_key not in p.extra and s_key not in p.extra and "answer_vqa" not in p.extra:
        return None  # not a V-STaR results item (there an absent chain-2 answer scores 0) and no chain 2
    if not chain and p.span_s is not None:
        answer = list(p.span_s)
    else:
        answer = p.extra.get(t_key)
    tiou = vstar_tiou(q.span_s, answer)
    try:
        aps, miou = vstar_spatial_metrics(gt_boxes, pred_boxes_by_time(q, p, chain))
    except VstarCrash:
        other["crash"] = other.get("crash", 0) + 1  # the official stops here; we score 0 and count it
        aps, miou = [0.0] * len(VSTAR_AP_THRESHOLDS), 0.0
    row = {"tIoU" + chain: tiou}
    row.update({f"R1{chain}@{t}": float(tiou >= t) for t in VSTAR_TIOU_THRESHOLDS})
    row["vIoU" + chain] = miou
    row.update({f"AP{chain}@{m}": ap for m, ap in zip(VSTAR_AP_THRESHOLDS, aps)})
    return row


def _empty_chain(chain: str, value: float | None) -> dict:
    row = {"tIoU" + chain: value}
    row.update({f"R1{chain}@{t}": value for t in VSTAR_TIOU_THRESHOLDS})
    row["vIoU" + chain] = value
    row.update({f"AP{chain}@{m}": value for m in VSTAR_AP_THRESHOLDS})
    return row


def score_vstar(
    queries: Sequence[GroundingQuery], preds: Sequence[GroundingPrediction | None], other: dict | None = None
) -> list[dict]:
    """Per-query V-STaR rows, chain 1 (``tIoU``, ``R1@m``, ``vIoU``, ``AP@m``) and chain 2 (``*_2``).

    As ``eval.py``: an answer whose ``extra`` holds an empty ``answer_vqa`` is skipped (``skipped``,
    left out of every mean); a query without GT boxes scores mIoU / AP 0 and counts; an empty "where"
    answer scores 0. Chain 1's "when" answer is ``span_s`` if set, else ``extra["answer_temporal"]``.
    Chain 2 (``answer_temporal_2`` / ``answer_spatial_2``) is None for a prediction that has neither
    them nor ``answer_vqa`` (i.e. not from a V-STaR results file, where an absent answer scores 0).
    ``vqa_score`` (the 0-3 judge rating; -1 unparsable) comes from ``extra["vqa_score"]``, else from
    ``other["vstar_judge"]`` (``judge(question, gt answer, answer_vqa)``, :mod:`.vstar_judge`).
    """
    other = other if other is not None else {}
    rows = []
    for q, p in zip(queries, preds):
        if q.span_s is None:
            raise AnnotationError("vstar query has no span_s (GT timestamps)", entry=f"qid {q.qid}")
        gt_boxes = gt_boxes_by_time(q)
        meta = {
            "domain": q.extra.get("domain") or "unknown",
            "duration": q.extra.get("duration_bucket"),
            "vqa_score": None,
            "skipped": False,
        }
        if p is None:
            row = {**_empty_chain("", 0.0), **_empty_chain("_2", None), **meta}
        elif "answer_vqa" in p.extra and not p.extra["answer_vqa"]:
            other["vstar_skipped"] = other.get("vstar_skipped", 0) + 1
            row = {**_empty_chain("", None), **_empty_chain("_2", None), **meta, "skipped": True}
        else:
            row = _chain(q, p, gt_boxes, "", other)
            row.update(_chain(q, p, gt_boxes, "_2", other) or _empty_chain("_2", None))
            score = p.extra.get("vqa_score")
            if not (isinstance(score, int) and not isinstance(score, bool)):
                score = None
            judge = other.get("vstar_judge")
            if score is None and judge is not None and p.extra.get("answer_vqa"):
                score = judge(q.extra.get("question", ""), q.extra.get("answer", ""), p.extra["answer_vqa"])
            meta["vqa_score"] = score
            row.update(meta)
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- registration

_EXTRA_READ = (  # the prediction extras score_vstar reads
    "boxes_by_time", "answer_temporal", "answer_spatial", "answer_temporal_2", "answer_spatial_2", "answer_vqa",
    "vqa_score",
)


def vstar_metric_names(chain: str = "") -> list[tuple[str, str]]:
    """V-STaR chain 1 (``""``) or chain 2 (``"_2"``) ``(per-query key, summary key)`` pairs."""
    names = [(f"tIoU{chain}", f"m_tIoU{chain}")] + [(f"R1{chain}@{t}",) * 2 for t in VSTAR_TIOU_THRESHOLDS]
    return names + [(f"vIoU{chain}", f"m_vIoU{chain}")] + [(f"AP{chain}@{m}",) * 2 for m in VSTAR_AP_THRESHOLDS]


def _answered_rows(idx: list[int], queries, preds, rows: Sequence[Mapping], lmms_compat: bool) -> list[int]:
    """``eval.py`` ``continue``s past an item with an empty ``answer_vqa`` before any score."""
    return [i for i in idx if not rows[i].get("skipped")]


register_protocol(
    ProtocolSpec(
        "vstar",
        lambda qs, ps, ctx: score_vstar(qs, ps, ctx.other),
        lambda thresholds: vstar_metric_names(""),
        tasks=("stvg", "tvg"),
        extra_keys=_EXTRA_READ,
        summary_rows=_answered_rows,
        secondary_names=tuple(vstar_metric_names("_2")),  # chain 2: None without its answers
        group_summary=lambda rows, ctx: vstar_report(rows, ctx.vstar_accuracy),
    )
)
