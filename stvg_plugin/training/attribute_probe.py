"""Does a grounding model read each attribute word? Per-attribute scores and a word-swap test.

Why: on the synthetic set a model can score well by reading the shape word alone (most queries need
nothing else), while the queries that need a colour or a motion phrase to single their object out
stay near the level of guessing between two identical shapes. Two views tell that apart
(examples/learnability.md):

* :func:`attribute_scores`: the metric summary per group of held-out queries, grouped by the attributes
  each query *needs* (``extra["synthetic"]["needed"]``, written by :func:`stvg_plugin.synth.generate_synthetic`);
* :func:`word_swap_test`: swap one word of each query (its colour for another colour, its shape for
  another shape) and count the queries whose predicted box moves; a model that ignores the word keeps
  the box where it was.

A swapped word does not always name anything: "the red circle" becomes "the green circle" in a video
whose other object is a blue square, and then no box is right, and a model that grounds the closest
description (still the red circle: shape right, colour wrong) keeps its box, as one that ignores colour
does. So the test splits each swap by what the new text names, from the other objects the generator
records (``extra["synthetic"]["others"]``): ``names_other`` (the new text describes another object of
the video: the box should move) and ``names_none``; and the ``colour_to_other`` swap replaces the colour
with the one that makes the text describe exactly another object of the video (the question "does the
model read the colour word when it is what singles the object out", which the plain swap asks only
when the next colour in the cycle happens to be that object's).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace

import numpy as np

from stvg_plugin.data import GroundingPrediction, GroundingQuery
from stvg_plugin.metrics import evaluate
from stvg_plugin.synth import COLOURS, MOTION_PHRASES, SHAPES, SIZES
from stvg_plugin.util.box_ops import box_iou

ATTRIBUTES = ("colour", "size", "motion")
#: the words a swap replaces, cycled in this order (a colour becomes the next colour)
SWAP_WORDS = {"colour": tuple(COLOURS), "shape": SHAPES}
#: the swaps :func:`word_swap_test` can run: the next word of a kind, or the colour of another object
SWAP_KINDS = ("colour", "shape", "colour_to_other")
#: a box "moves" when its centre moves by more than this fraction of the frame width (mean over shared frames)
MOVE_FRACTION = 0.1


def needed_attributes(query: GroundingQuery) -> tuple[str, ...] | None:
    """The attributes a synthetic query needs besides its shape (``None``: not a synthetic query)."""
    meta = (query.extra or {}).get("synthetic")
    if not isinstance(meta, dict) or "needed" not in meta:
        return None
    return tuple(a for a in ATTRIBUTES if a in meta["needed"])


def needed_groups(needed: Sequence[str]) -> list[str]:
    """The ``by="needed"`` groups a query with these needed attributes belongs to: ``<attribute>-needed``
    for each (a query needing two is in both), or ``shape only`` when it needs none."""
    return [f"{a}-needed" for a in needed] or ["shape only"]


def named_attributes(query: GroundingQuery) -> tuple[str, ...]:
    """The attributes a synthetic query's text names besides its shape (needed or not)."""
    words = set(query.query.split())
    named = {"colour": bool(words & set(COLOURS)), "size": bool(words & set(SIZES)),
             "motion": bool(words & {"moving", "still"})}
    return tuple(a for a in ATTRIBUTES if named[a])


def attribute_scores(
    queries: Sequence[GroundingQuery],
    predictions: Iterable[GroundingPrediction],
    keys: Sequence[str] = ("m_tIoU", "m_vIoU"),
    protocol: str = "tubedetr",
    by: str = "needed",
) -> dict[str, dict[str, float]]:
    """Scores per query group, each with its query count ``n``.

    ``by="needed"``: ``shape only``, ``colour-needed``, ``motion-needed``, ``size-needed`` (a query needing
    two attributes is in both of their groups). ``by="named"``: one group per set of attributes the text
    names (``shape``, ``colour``, ``size+motion`` ...), needed or not (the grouping of session 4).
    """
    if by not in ("needed", "named"):
        raise ValueError(f"attribute_scores groups by 'needed' or 'named', not {by!r}")
    by_qid = {p.qid: p for p in predictions}
    groups: dict[str, list[GroundingQuery]] = {name: [] for name in needed_groups(()) + needed_groups(ATTRIBUTES)}
    for q in queries:
        needed = needed_attributes(q)
        if needed is None:
            continue
        names = ["+".join(named_attributes(q)) or "shape"] if by == "named" else needed_groups(needed)
        for name in names:
            groups.setdefault(name, []).append(q)
    out: dict[str, dict[str, float]] = {}
    for name, group in groups.items():
        if not group:
            continue
        summary = evaluate(group, [by_qid[q.qid] for q in group if q.qid in by_qid], protocol=protocol).summary
        out[name] = {"n": len(group), **{k: round(float(summary[k]), 4) for k in keys}}
    return out


def swap_word(text: str, kind: str, to: str | None = None) -> str | None:
    """``text`` with its ``kind`` word (``colour`` | ``shape``) replaced by ``to`` (default: the next word of
    that kind), or ``None`` when it names none."""
    words = SWAP_WORDS[kind]
    for i, word in enumerate(words):
        pattern = rf"\b{word}\b"
        if re.search(pattern, text):
            return re.sub(pattern, to or words[(i + 1) % len(words)], text, count=1)
    return None


def named_values(text: str) -> dict[str, str]:
    """The attribute values a synthetic query's text names: ``shape``, and ``colour`` / ``size`` /
    ``motion`` where named (``"the small red circle moving left"`` -> all four)."""
    words = text.split()
    out = {}
    for kind, vocabulary in (("shape", SHAPES), ("colour", tuple(COLOURS)), ("size", SIZES)):
        found = [w for w in words if w in vocabulary]
        if found:
            out[kind] = found[0]
    for motion, phrase in MOTION_PHRASES.items():
        if re.search(rf"\b{phrase}\b", text):
            out["motion"] = motion
    return out


def recorded_others(query: GroundingQuery) -> list[dict] | None:
    """The other objects of a synthetic query's video as the generator recorded them (attributes, span,
    boxes); ``None`` when it records none (not synthetic, or data written before they were recorded)."""
    return ((query.extra or {}).get("synthetic") or {}).get("others")


def described_others(query: GroundingQuery, text: str) -> list[dict] | None:
    """The other objects of the query's video that ``text`` describes (every value it names matches);
    ``None`` when the query does not record its video's other objects (:func:`recorded_others`)."""
    others = recorded_others(query)
    if others is None:
        return None
    named = named_values(text)
    return [o for o in others if all(o.get(k) == v for k, v in named.items())]


def _colour_of_another_object(query: GroundingQuery) -> tuple[str, dict] | None:
    """The colour that, put in place of the query's colour word, makes its text describe exactly one other
    object of the video, and that object (``None``: no such object, or no colour word)."""
    named = named_values(query.query)
    if "colour" not in named:
        return None
    for colour in COLOURS:
        if colour != named["colour"]:
            fits = described_others(query, swap_word(query.query, "colour", to=colour))
            if fits is not None and len(fits) == 1:
                return colour, fits[0]
    return None


def _mean_iou(pred: GroundingPrediction, boxes: dict) -> float:
    """Mean IoU of the predicted boxes with ``boxes`` (frame -> xyxy; JSON keys allowed) over the frames
    both have (0 without one)."""
    track = {int(f): b for f, b in boxes.items()}
    shared = sorted(set(pred.boxes) & set(track))
    if not shared:
        return 0.0
    return float(np.mean([box_iou(pred.boxes[f], track[f]) for f in shared]))


def lands_on(pred: GroundingPrediction, boxes: dict, rival: dict) -> bool:
    """Whether a prediction's boxes sit on the object of ``boxes`` rather than on that of ``rival`` (frame
    -> xyxy each): a higher mean IoU over the frames each shares with the prediction."""
    return _mean_iou(pred, boxes) > _mean_iou(pred, rival)


#: where a prediction's boxes sit, for :func:`box_placement` (mean IoU over the frames each shares)
PLACEMENTS = ("on target", "on another object", "near target", "elsewhere")


def placement(pred: GroundingPrediction | None, query: GroundingQuery) -> str | None:
    """Where ``pred``'s boxes sit in a synthetic query's video (:data:`PLACEMENTS`): on the target (mean IoU
    >= 0.5), on another object (a higher mean IoU with one of the recorded others), near the target (some
    overlap) or elsewhere; ``None`` when the query records no other objects."""
    others = recorded_others(query)
    if others is None or any("boxes" not in o for o in others):
        return None
    on_target = _mean_iou(pred, query.boxes) if pred is not None else 0.0
    if on_target >= 0.5:
        return "on target"
    if pred is not None and any(_mean_iou(pred, o["boxes"]) > on_target for o in others):
        return "on another object"
    return "near target" if on_target > 0 else "elsewhere"


def box_placement(queries: Sequence[GroundingQuery], predictions: Iterable[GroundingPrediction],
                  by: str = "needed") -> dict[str, dict[str, int]]:
    """Counts of :func:`placement` per query group: where the misses go (another object: the words were
    misread; near the target: the box is loose). ``by="needed"``: the groups of :func:`attribute_scores`;
    ``by="size"``: the target's size (``small`` / ``large``) within the shape-only queries."""
    if by not in ("needed", "size"):
        raise ValueError(f"box_placement groups by 'needed' or 'size', not {by!r}")
    by_qid = {p.qid: p for p in predictions}
    out: dict[str, dict[str, int]] = {}
    for q in queries:
        needed = needed_attributes(q)
        where = placement(by_qid.get(q.qid), q)
        if needed is None or where is None:
            continue
        if by == "size":
            groups = [] if needed else [f"shape only, {q.extra['synthetic']['size']}"]
        else:
            groups = needed_groups(needed)
        for group in groups:
            counts = out.setdefault(group, dict.fromkeys(PLACEMENTS, 0))
            counts[where] += 1
    return out


def box_moved(a: GroundingPrediction, b: GroundingPrediction, width: int, fraction: float = MOVE_FRACTION) -> bool:
    """Whether the box centres of two predictions differ by more than ``fraction`` of the frame width on
    average over the frames both hold a box on; no shared frame counts as moved (the span moved)."""
    shared = sorted(set(a.boxes) & set(b.boxes))
    if not shared:
        return True
    ca = np.array([[(a.boxes[f][0] + a.boxes[f][2]) / 2, (a.boxes[f][1] + a.boxes[f][3]) / 2] for f in shared])
    cb = np.array([[(b.boxes[f][0] + b.boxes[f][2]) / 2, (b.boxes[f][1] + b.boxes[f][3]) / 2] for f in shared])
    return float(np.linalg.norm(ca - cb, axis=1).mean()) > fraction * max(int(width), 1)


def _moved_summary(moved: Sequence[bool]) -> dict[str, float]:
    return {"n": len(moved), "moved": round(float(np.mean(moved)), 4) if moved else float("nan")}


def word_swap_test(
    predict: Callable[[Sequence[GroundingQuery]], Iterable[GroundingPrediction]],
    queries: Sequence[GroundingQuery],
    kinds: Sequence[str] = SWAP_KINDS,
) -> dict[str, dict]:
    """For each kind (:data:`SWAP_KINDS`), the fraction of the queries it applies to whose box moves when
    their word is swapped: ``{"n", "moved"}``.

    ``colour`` and ``shape`` swap to the next word of the kind; when the queries record their video's
    other objects, each also has ``names_other`` and ``names_none`` (``{"n", "moved"}`` each: the swapped
    text describes another object of the video, or nothing in it). ``colour_to_other`` swaps the colour
    for the one that describes exactly another object of the video; it applies only to such queries and
    is left out when there is none; where that object's boxes are recorded, ``on_named_object`` is the
    fraction of these swaps whose box sits on it (:func:`lands_on`) rather than on the query's target,
    and ``both_ways`` the fraction where, in addition, the original query's box sits on its target (the
    colour word steers the box to either object). ``predict`` answers a list of queries (e.g. ``Grounder.predict``);
    the originals and all swapped copies go in one call, so a grounder encodes each video once.
    """
    unknown = set(kinds) - set(SWAP_KINDS)
    if unknown:
        raise ValueError(f"unknown swap kinds {sorted(unknown)}; known: {SWAP_KINDS}")
    batch: list[GroundingQuery] = list(queries)
    pairs: dict[str, list[tuple[GroundingQuery, str, bool | None]]] = {k: [] for k in kinds}
    named_object: dict[str, dict] = {}  # colour_to_other: swapped qid -> the object its text now describes
    for kind in kinds:
        for q in queries:
            qid = f"{q.qid}#swap_{kind}"
            if kind == "colour_to_other":
                found = _colour_of_another_object(q)
                swapped = swap_word(q.query, "colour", to=found[0]) if found else None
                if found:
                    named_object[qid] = found[1]
            else:
                swapped = swap_word(q.query, kind)
            if swapped is not None:
                batch.append(replace(q, qid=qid, query=swapped))
                others = described_others(q, swapped)
                pairs[kind].append((q, qid, None if others is None else bool(others)))
    batch.sort(key=lambda q: q.video)  # one video's queries together
    preds = {p.qid: p for p in predict(batch)}
    out: dict[str, dict] = {}
    for kind, items in pairs.items():
        if kind == "colour_to_other" and not items:
            continue
        moved = [box_moved(preds[q.qid], preds[qid], q.width) for q, qid, _ in items]
        out[kind] = _moved_summary(moved)
        if kind == "colour_to_other" and all("boxes" in named_object[qid] for _, qid, _ in items):
            on = [lands_on(preds[qid], named_object[qid]["boxes"], q.boxes) for q, qid, _ in items]
            own = [lands_on(preds[q.qid], q.boxes, named_object[qid]["boxes"]) for q, qid, _ in items]
            out[kind]["on_named_object"] = round(float(np.mean(on)), 4)
            out[kind]["both_ways"] = round(float(np.mean(np.logical_and(on, own))), 4)
        elif kind != "colour_to_other" and any(names is not None for _, _, names in items):
            for key, want in (("names_other", True), ("names_none", False)):
                out[kind][key] = _moved_summary([m for m, (_, _, names) in zip(moved, items) if names is want])
    return out
