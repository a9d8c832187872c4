"""Ground a dataset's samples with a model (loaded by the core's one loader), resumably, in batched writes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import fiftyone as fo

from stvg_plugin.data import GroundingPrediction, StvgError

from .fields import _check_writable, _clear, _declare, _info, _save_info, write_predictions
from .labels import PredFields, sample_queries

_MODEL_CACHE: dict[tuple, Any] = {}


def load_model(model: str = "spacevllm_tiny", checkpoint: str | None = None, device: str = "cpu",
               num_frames: int | None = None, cache: bool = True, trust_remote_code: bool = False) -> Any:
    """A ``Grounder`` (model core preset) or, with ``model="prompted"``, a ``PromptedGrounder`` checkpoint.

    Kept per process (the App server, a delegated worker) so repeated runs do not reload weights.
    ``trust_remote_code`` is the operator's parameter only; a checkpoint asking for it is refused without it.
    """
    key = (model, checkpoint, device, num_frames, bool(trust_remote_code))
    if cache and key in _MODEL_CACHE:
        return _MODEL_CACHE[key]
    from stvg_plugin.models import ModelSpec, load_grounder, resolve_spec

    if model == "prompted":
        if not checkpoint:
            raise StvgError("model='prompted' needs checkpoint=<local folder of a Qwen2.5-VL, Qwen3-VL, "
                            "InternVL or LLaVA-OneVision checkpoint>")
        options = {"num_frames": int(num_frames)} if num_frames else {}
        grounder = load_grounder(ModelSpec("prompted", {"type": "prompted", **options}, checkpoint, device))
    else:
        cfg: Any = model
        if num_frames:
            cfg = dict(resolve_spec(model), num_frames=int(num_frames))
        if trust_remote_code:  # a key of its own: the preset's runtime keys must not override the checkpoint's
            cfg = {**({"preset": cfg} if isinstance(cfg, str) else cfg), "trust_remote_code": bool(trust_remote_code)}
        grounder = load_grounder(ModelSpec.from_config(cfg, checkpoint, device))
    if cache:
        _MODEL_CACHE[key] = grounder
    return grounder


def _done_ids(view, pf: PredFields) -> set[str]:
    schema = view.get_field_schema()
    if pf.meta not in schema:
        return set()
    ids, metas = view.values(["id", pf.meta])
    errors = view.values(pf.error) if pf.error in schema else [None] * len(ids)
    return {sid for sid, m, e in zip(ids, metas, errors) if m is not None and e is None}


def iter_ground(
    view,
    pred_field: str,
    *,
    model: str = "spacevllm_tiny",
    checkpoint: str | None = None,
    device: str = "cpu",
    num_frames: int | None = None,
    gt_field: str = "gt",
    query_field: str = "query",
    overwrite: bool = False,
    batch_size: int = 16,
    max_samples: int | None = None,
    grounder: Any = None,
    trust_remote_code: bool = False,
) -> Iterator[dict]:
    """Ground the samples of ``view``; yields progress dicts, the last one with ``"result"``.

    Resumable: samples whose ``<p>_meta`` is set without ``<p>_error`` are skipped unless
    ``overwrite``; ``max_samples`` stops after that many new samples (rerun to continue). A sample
    whose video cannot be decoded gets ``<p>_error`` and is counted in ``result["num_errors"]``.
    """
    pf, g = _check_writable(view, pred_field, gt_field)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    ds = view._dataset
    work = sample_queries(view, g.base, query_field)
    metas = dict(zip(*view.values(["id", "metadata"])))
    missing_meta = [sid for sid, _ in work if metas.get(sid) is None or not metas[sid].frame_width]
    if missing_meta:
        raise StvgError(f"{len(missing_meta)} samples have no video metadata (e.g. {missing_meta[0]}); "
                        "import with import_benchmark or fill fo.VideoMetadata first")  # fmt: skip
    done = set() if overwrite else _done_ids(view, pf)
    todo = [(sid, qs) for sid, qs in work if sid not in done and qs]
    if max_samples is not None:
        todo = todo[: max(0, int(max_samples))]
    _declare(ds, pf)  # nothing is written before all checks above passed
    _clear(ds, [sid for sid, _ in todo], pf)
    total = len(todo)
    yield {"done": 0, "total": total}

    result = {
        "pred_field": pred_field,
        "num_samples": len(work),
        "num_skipped_done": sum(1 for sid, _ in work if sid in done),
        "num_processed": 0,
        "num_queries": 0,
        "num_errors": 0,
        "errors": [],
    }
    if todo:
        grounder = grounder or load_model(model, checkpoint, device, num_frames, trust_remote_code=trust_remote_code)
        owner = {q.qid: sid for sid, qs in todo for q in qs}
        expected = {sid: len(qs) for sid, qs in todo}
        got: dict[str, list[GroundingPrediction]] = {sid: [] for sid, _ in todo}
        pending: list[str] = []
        finished = 0

        def flush() -> None:
            nonlocal pending
            items = [(sid, metas[sid], got.pop(sid)) for sid in pending]
            write_predictions(ds, pf, items)
            for sid, _, preds in items:
                errs = sorted({p.error for p in preds if p.error})
                if errs:
                    result["num_errors"] += 1
                    if len(result["errors"]) < 50:
                        result["errors"].append({"id": sid, "error": "; ".join(errs)})
                result["num_queries"] += len(preds)
            pending = []

        all_queries = [q for _, qs in todo for q in qs]
        for pred in grounder.predict(all_queries, progress=False):
            sid = owner.get(pred.qid)
            if sid is None or sid not in got:
                continue
            got[sid].append(pred)
            if len(got[sid]) == expected[sid]:
                pending.append(sid)
                finished += 1
                if len(pending) >= batch_size:
                    flush()
                yield {"done": finished, "total": total}
        for sid in [s for s in got if s not in pending]:  # the model skipped some queries: record that
            have = {p.qid for p in got[sid]}
            got[sid] += [GroundingPrediction(qid=q.qid, error="model returned no prediction")
                         for q in dict(todo)[sid] if q.qid not in have]  # fmt: skip
            pending.append(sid)
        if pending:
            flush()
        result["num_processed"] = total
    _record_run(ds, pred_field, model, checkpoint, result)
    yield {"done": total, "total": total, "result": result}


def _record_run(ds: fo.Dataset, pred_field: str, model: str, checkpoint: str | None, result: dict) -> None:
    info = _info(ds)
    runs = dict(info.get("runs") or {})
    runs[pred_field] = {"model": model, "checkpoint": checkpoint, **result, "errors": result["errors"][:20]}
    info["runs"] = runs
    _save_info(ds, info)


def ground_videos(view, pred_field: str, **kw: Any) -> dict:
    """Run :func:`iter_ground` to the end; returns its result."""
    last: dict = {}
    for event in iter_ground(view, pred_field, **kw):
        last = event
    return last["result"]
