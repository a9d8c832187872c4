"""Import a benchmark into a FiftyOne video dataset (GT spans and boxes), atomically replacing an older one."""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import fiftyone as fo

from stvg_plugin.data import GroundingQuery, StvgError

from .app import apply_colors
from .fields import _info, _save_info
from .labels import GtFields, check_name, gt_sample, video_metadata

QUERY_VIEW = "per_query"  # saved view made by import_benchmark (per-video layout): query_view(ds)
SYNTH = "synth"


def resolve_benchmark(name: str, annotations: str | os.PathLike) -> tuple[str, Path]:
    """``synth`` (the ``stvg synth`` folder or its annotations.jsonl) maps to the unified reader."""
    from stvg_plugin.adapters import BENCHMARKS

    key = str(name).strip().lower().replace("-", "_")
    path = Path(annotations).expanduser()
    if key == SYNTH:
        return "unified", path / "annotations.jsonl" if path.is_dir() else path
    if key not in BENCHMARKS:
        raise StvgError(f"unknown benchmark {name!r}; known: {', '.join((*BENCHMARKS, SYNTH))}")
    return key, path


def _video_facts(video: str, qs: Sequence[GroundingQuery]) -> tuple[float, int, int, int]:
    """fps, frames, width, height from the annotation when complete, else from the file header (PyAV)."""
    q = qs[0]
    if q.fps > 0 and q.num_frames > 0 and q.width > 0 and q.height > 0:
        return q.fps, q.num_frames, q.width, q.height
    from stvg_plugin.video import probe_video

    info = probe_video(video)
    return info.fps, info.num_frames, info.width, info.height


def import_benchmark(
    name: str,
    annotations: str | os.PathLike,
    dataset_name: str | None = None,
    *,
    video_root: str | os.PathLike | None = None,
    one_sample_per_query: bool = False,
    gt_field: str = "gt",
    overwrite: bool = False,
    persistent: bool = True,
    skip_missing_videos: bool = True,
    batch_size: int = 64,
    single_span_fields: bool = False,
    **reader_kw: Any,
) -> tuple[fo.Dataset, dict]:
    """Load a benchmark (``stvg_plugin.adapters``) into a video dataset; returns ``(dataset, result)``.

    A video that is missing on disk (or, lacking fps/size in the annotation, cannot be probed) is
    skipped and named in ``result["skipped"]``; an existing but undecodable file is imported (its
    grounding then records the decode error). No ffprobe is needed: metadata comes from the
    annotation or PyAV's header read. ``single_span_fields`` also writes ``<gt>_span`` / ``<p>_span``
    (a ``TemporalDetection``) on one-query samples, duplicating ``<gt>_spans`` / ``<p>_spans``.

    ``overwrite=True`` never loses the existing dataset: the new one is built under a temporary
    name and swapped in only when the whole import succeeded (:func:`_swap_in`); on any failure the
    temporary dataset is deleted and the old one is left as it was.
    """
    from stvg_plugin.adapters import load_benchmark

    g = GtFields(check_name(gt_field, "ground-truth field"))
    bench, path = resolve_benchmark(name, annotations)
    replacing = dataset_name is not None and fo.dataset_exists(dataset_name)
    if replacing and not overwrite:
        raise StvgError(f"dataset {dataset_name!r} exists; pass overwrite=True to replace it")
    skipped_entries: list = []
    reader_kw.setdefault("skipped", skipped_entries)
    queries = load_benchmark(bench, str(path), video_root=str(video_root) if video_root else None, **reader_kw)
    build_name = f"{dataset_name}-stvg-import-{uuid.uuid4().hex[:12]}" if replacing else dataset_name
    ds = fo.Dataset(build_name, persistent=persistent)
    try:
        result = _fill(ds, queries, skipped_entries, bench, path, g, gt_field, one_sample_per_query, batch_size,
                       skip_missing_videos, single_span_fields)
    except BaseException:
        ds.delete()
        raise
    if replacing:
        try:
            _swap_in(ds, dataset_name)
        except BaseException:
            if ds.name != dataset_name:  # not swapped in: the old dataset still has the name
                ds.delete()
            raise
    result["dataset"] = ds.name
    return ds, result


def _swap_in(new: fo.Dataset, name: str) -> None:
    """Give ``new`` the name ``name``, then delete the dataset that had it (renamed aside first)."""
    old = fo.load_dataset(name)
    aside = f"{name}-stvg-replaced-{uuid.uuid4().hex[:12]}"
    old.name = aside
    try:
        new.name = name
    except BaseException:
        old.name = name
        raise
    fo.delete_dataset(aside)


def _fill(ds, queries, skipped_entries, bench, path, g, gt_field, one_sample_per_query, batch_size,
          skip_missing_videos, single_span_fields) -> dict:
    """Add one sample per video (or per query) to ``ds``; returns the import result."""
    from stvg_plugin.adapters import default_protocol
    from stvg_plugin.video import VideoReadError

    by_video: dict[str, list[GroundingQuery]] = {}
    for q in queries:
        by_video.setdefault(q.video, []).append(q)
    skipped: list[dict] = [{"video": None, "reason": f"{e.entry}: {e.reason}"} for e in skipped_entries]
    batch: list[fo.Sample] = []
    num_samples = num_queries = 0
    for video, qs in by_video.items():
        if not os.path.isfile(video):
            if skip_missing_videos:
                skipped.append({"video": video, "reason": "file not found", "qids": [q.qid for q in qs]})
                continue
        try:
            fps, n, w, h = _video_facts(video, qs)
        except VideoReadError as exc:
            skipped.append({"video": video, "reason": exc.reason, "qids": [q.qid for q in qs]})
            continue
        meta = video_metadata(video, fps, n, w, h)
        groups = [[q] for q in qs] if one_sample_per_query else [qs]
        for group in groups:
            batch.append(gt_sample(video, group, meta, g, flat=one_sample_per_query, single_span=single_span_fields))
            num_samples += 1
            num_queries += len(group)
        if len(batch) >= batch_size:
            ds.add_samples(batch, progress=False)
            batch = []
    if batch:
        ds.add_samples(batch, progress=False)
    if one_sample_per_query:
        ds.create_index("qid")
    _save_info(
        ds,
        {
            "benchmark": bench,
            "annotations": str(path),
            "protocol": default_protocol(bench),
            "layout": "query" if one_sample_per_query else "video",
            "gt_fields": sorted({gt_field, *(_info(ds).get("gt_fields") or [])}),
            "single_span_fields": bool(single_span_fields),
        },
    )
    apply_colors(ds, [gt_field])
    if not one_sample_per_query and num_samples:  # per-query fields in the sidebar: one clip per query
        ds.save_view(QUERY_VIEW, query_view(ds, gt_field), overwrite=True)
    result = {
        "dataset": ds.name,
        "benchmark": bench,
        "num_samples": num_samples,
        "num_queries": num_queries,
        "num_skipped": len(skipped),
        "skipped": skipped[:50],
    }
    return result


def query_view(dataset, gt_field: str = "gt"):
    """One clip per query (``to_clips("<gt>_spans")``): sort/filter by ``<gt>_spans.<key>_vIoU``."""
    return dataset.to_clips(GtFields(check_name(gt_field, "ground-truth field")).spans)
