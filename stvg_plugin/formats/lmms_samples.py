"""lmms-eval ``--log_samples`` JSONL (Charades-STA task) -> predictions with the raw model text.

Each sample line holds ``doc`` (``video``, ``caption``, ``timestamp``) or, in its ``charades_sta_*``
metric fields, the submission ``{"<video>>>><caption>>>><timestamp>": text}``; the text is
``filtered_resps[0]`` otherwise. A sample maps to the query with the same video stem and caption
(``q.query``); duplicates of one (video, caption) go to its queries in order, else by ``doc_id``.
Score with ``protocol=tvg lmms_compat=true`` to parse the text and merge duplicate keys as lmms-eval.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import PurePath

from stvg_plugin.data import AnnotationError, GroundingPrediction, GroundingQuery, iter_jsonl


def _key(video: str, caption: str) -> tuple[str, str]:
    return PurePath(str(video)).stem, str(caption).strip()


def _sample_fields(obj: Mapping) -> tuple[str | None, str | None, str | None]:
    """(video, caption, text) of one sample line."""
    for name, value in obj.items():
        if name.startswith("charades_sta_") and isinstance(value, Mapping) and len(value) == 1:
            key, text = next(iter(value.items()))
            parts = str(key).split(">>>")
            if len(parts) >= 3:
                return parts[0], ">>>".join(parts[1:-1]), text if isinstance(text, str) else None
    doc = obj.get("doc") if isinstance(obj.get("doc"), Mapping) else {}
    resps = obj.get("filtered_resps") or obj.get("resps") or []
    while isinstance(resps, list) and resps and isinstance(resps[0], list):
        resps = resps[0]
    text = resps[0] if isinstance(resps, list) and resps and isinstance(resps[0], str) else None
    return doc.get("video"), doc.get("caption"), text


def read_lmms_samples(path: str | os.PathLike, queries: Sequence[GroundingQuery] = ()) -> Iterator[GroundingPrediction]:
    pending: dict[tuple[str, str], list[GroundingQuery]] = {}
    for q in queries:
        pending.setdefault(_key(q.video, q.query), []).append(q)
    for lineno, obj in iter_jsonl(path):
        if not isinstance(obj, Mapping):
            raise AnnotationError("sample is not a JSON object", path, f"line {lineno}")
        video, caption, text = _sample_fields(obj)
        q = None
        if video is not None and caption is not None and pending.get(_key(video, caption)):
            q = pending[_key(video, caption)].pop(0)
        elif isinstance(obj.get("doc_id"), int) and 0 <= obj["doc_id"] < len(queries):
            q = queries[obj["doc_id"]]
        if q is None:
            raise AnnotationError("sample matches no query (video and caption, or doc_id)", path, f"line {lineno}")
        yield GroundingPrediction(qid=q.qid, raw_text=text, parse_failed=text is None)
