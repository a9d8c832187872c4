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
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace

import numpy as np

from stvg_plugin.data import GroundingPrediction, GroundingQuery
from stvg_plugin.metrics import evaluate
from stvg_plugin.synth import COLOURS, SHAPES, SIZES

ATTRIBUTES = ("colour", "size", "motion")
#: the words a swap replaces, cycled in this order (a colour becomes the next colour)
SWAP_WORDS = {"colour": tuple(COLOURS), "shape": SHAPES}
#: a box "moves" when its centre moves by more than this fraction of the frame width (mean over shared frames)
MOVE_FRACTION = 0.1


def needed_attributes(query: GroundingQuery) -> tuple[str, ...] | None:
    """The attributes a synthetic query needs besides its shape (``None``: not a synthetic query)."""
    meta = (query.extra or {}).get("synthetic")
    if not isinstance(meta, dict) or "needed" not in meta:
        return None
    return tuple(a for a in ATTRIBUTES if a in meta["needed"])


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
    by_qid = {p.qid: p for p in predictions}
    groups: dict[str, list[GroundingQuery]] = {"shape only": []} | {f"{a}-needed": [] for a in ATTRIBUTES}
    for q in queries:
        needed = needed_attributes(q)
        if needed is None:
            continue
        if by == "named":
            groups.setdefault("+".join(named_attributes(q)) or "shape", []).append(q)
            continue
        if not needed:
            groups["shape only"].append(q)
        for a in needed:
            groups[f"{a}-needed"].append(q)
    out: dict[str, dict[str, float]] = {}
    for name, group in groups.items():
        if not group:
            continue
        summary = evaluate(group, [by_qid[q.qid] for q in group if q.qid in by_qid], protocol=protocol).summary
        out[name] = {"n": len(group), **{k: round(float(summary[k]), 4) for k in keys}}
    return out


def swap_word(text: str, kind: str) -> str | None:
    """``text`` with its ``kind`` word (``colour`` | ``shape``) replaced by the next word of that kind, or
    ``None`` when it names none."""
    words = SWAP_WORDS[kind]
    for i, word in enumerate(words):
        pattern = rf"\b{word}\b"
        if re.search(pattern, text):
            return re.sub(pattern, words[(i + 1) % len(words)], text, count=1)
    return None


def box_moved(a: GroundingPrediction, b: GroundingPrediction, width: int, fraction: float = MOVE_FRACTION) -> bool:
    """Whether the box centres of two predictions differ by more than ``fraction`` of the frame width on
    average over the frames both hold a box on; no shared frame counts as moved (the span moved)."""
    shared = sorted(set(a.boxes) & set(b.boxes))
    if not shared:
        return True
    ca = np.array([[(a.boxes[f][0] + a.boxes[f][2]) / 2, (a.boxes[f][1] + a.boxes[f][3]) / 2] for f in shared])
    cb = np.array([[(b.boxes[f][0] + b.boxes[f][2]) / 2, (b.boxes[f][1] + b.boxes[f][3]) / 2] for f in shared])
    return float(np.linalg.norm(ca - cb, axis=1).mean()) > fraction * max(int(width), 1)


def word_swap_test(
    predict: Callable[[Sequence[GroundingQuery]], Iterable[GroundingPrediction]],
    queries: Sequence[GroundingQuery],
    kinds: Sequence[str] = ("colour", "shape"),
) -> dict[str, dict[str, float]]:
    """For each kind, the fraction of the queries naming such a word whose box moves when it is swapped.

    ``predict`` answers a list of queries (e.g. ``Grounder.predict``); the originals and all swapped
    copies go in one call, so a grounder encodes each video once.
    """
    batch: list[GroundingQuery] = list(queries)
    pairs: dict[str, list[tuple[GroundingQuery, str]]] = {k: [] for k in kinds}
    for kind in kinds:
        for q in queries:
            swapped = swap_word(q.query, kind)
            if swapped is not None:
                qid = f"{q.qid}#swap_{kind}"
                batch.append(replace(q, qid=qid, query=swapped))
                pairs[kind].append((q, qid))
    batch.sort(key=lambda q: q.video)  # one video's queries together
    preds = {p.qid: p for p in predict(batch)}
    out: dict[str, dict[str, float]] = {}
    for kind, items in pairs.items():
        moved = [box_moved(preds[q.qid], preds[qid], q.width) for q, qid in items]
        out[kind] = {"n": len(moved), "moved": round(float(np.mean(moved)), 4) if moved else float("nan")}
    return out
