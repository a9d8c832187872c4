"""HC-STVG v1 / v2 native JSON <-> unified queries.

Source convention (benchmarks.md §1-3): a dict keyed by video file name; ``bbox`` is a list of
``[x, y, w, h]`` pixels, one per frame, contiguous from ``st_frame``, which the README calls
**1-based**; there is no end field (last tube frame = ``st_frame + len(bbox) - 1``, 1-based inclusive).
v1 names the caption ``caption`` and the size ``width``/``height``; v2 uses ``English`` and
``img_size = [H, W]``; CG-STVG's v2 re-export uses the v1 names, so both spellings are read in
either version.

Unified record: ``span_frames = [st_frame - 1, st_frame - 1 + len(bbox))`` (0-based, end-exclusive),
boxes xywh -> xyxy without clipping, ``fps = img_num / 20`` (every clip is taken as 20 s long: the
TubeDETR convention; the true rate is not in the file), ``extra["segment"] = [0, img_num - 1]``
(TubeDETR never samples the last frame) and ``extra["tubedetr_frame_offset"] = 1`` (TubeDETR uses
``st_frame`` as a 0-based index; its protocol shifts the GT by this for exact parity).

Project extensions (absent from native files, honoured when present): ``video_file``, the real
video file name when the key is not one (synthetic data with several queries per video), and
``fps``, the true frame rate when a clip is not 20 s long. :func:`write_hcstvg` writes them only
when needed, so it reproduces native files exactly otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from stvg_plugin.adapters._common import (
    BenchmarkError,
    EntryRunner,
    VideoResolver,
    as_box,
    as_float,
    as_int,
    as_list,
    as_mapping,
    as_positive,
    as_str,
    field,
    load_json_file,
)
from stvg_plugin.adapters.registry import BenchmarkSpec, DataSource, register_benchmark
from stvg_plugin.data import AnnotationError, GroundingQuery, check_query, frame_seconds, frames_to_seconds, write_json
from stvg_plugin.util.box_ops import xywh_to_xyxy, xyxy_to_xywh

HCSTVG_CLIP_SECONDS = 20.0
TUBEDETR_FRAME_OFFSET = 1


def read_hcstvg(
    annotations: str | os.PathLike,
    video_root: str | os.PathLike | None = None,
    *,
    version: int = 1,
    video_parts: str | os.PathLike | None = None,
    on_error: str = "raise",
    skipped: list | None = None,
) -> list[GroundingQuery]:
    """Read ``train.json``/``test.json`` (v1) or ``trainv2.json``/``valv2.json`` (v2).

    ``video_parts`` is v2's ``video_part.json`` (``{package: [file names]}`` or ``{stem: package}``);
    when omitted, ``<video_root>/video_part.json`` is used if it exists.
    """
    if version not in (1, 2):
        raise BenchmarkError(f"HC-STVG version must be 1 or 2, got {version!r}")
    raw = load_json_file(annotations, unique_keys=True)
    if not isinstance(raw, Mapping):
        raise AnnotationError(f"expected a JSON object keyed by video file name, got {type(raw).__name__}", annotations)
    if video_parts is None and video_root is not None and (Path(video_root) / "video_part.json").is_file():
        video_parts = Path(video_root) / "video_part.json"
    resolve = VideoResolver(video_root, _read_video_parts(video_parts) if video_parts is not None else None)
    runner = EntryRunner(annotations, on_error, skipped)
    out = []
    for key, entry in raw.items():
        q = runner.run(key, _parse_entry, key, entry, version, resolve)
        if q is not None:
            out.append(q)
    return out


def _parse_entry(key: str, entry: Any, version: int, resolve: VideoResolver) -> GroundingQuery:
    entry = as_mapping(entry, "entry")
    img_num = as_positive(field(entry, "img_num"), "img_num")
    if "img_size" in entry and entry["img_size"] is not None:
        size = as_list(entry["img_size"], "img_size")
        if len(size) != 2:
            raise AnnotationError(f"img_size must be [H, W], got {size!r:.60}")
        height, width = (as_positive(v, "img_size") for v in size)
    else:
        width = as_positive(field(entry, "width"), "width")
        height = as_positive(field(entry, "height"), "height")
    caption = as_str(field(entry, "caption", "English"), "caption")
    st_frame = as_int(field(entry, "st_frame"), "st_frame")
    if st_frame < 0:
        # The README says 1-based, but TubeDETR's loader scores st_frame 0 (it reads st_frame as a 0-based
        # index), so 0 is accepted: its 0-based frame is -1, which only TubeDETR's +1 shift brings to 0.
        raise AnnotationError(f"st_frame must be >= 0, got {st_frame}")
    bbox = as_list(field(entry, "bbox"), "bbox")
    if not bbox:
        raise AnnotationError("bbox is empty (no tube)")
    xywh = [as_box(b, f"bbox[{i}]") for i, b in enumerate(bbox)]
    start = st_frame - 1
    end = start + len(xywh)
    fps = as_positive(entry["fps"], "fps", as_float) if entry.get("fps") is not None else img_num / HCSTVG_CLIP_SECONDS
    boxes = {start + i: [float(v) for v in box] for i, box in enumerate(xywh_to_xyxy(xywh).tolist())}
    extra: dict[str, Any] = {
        "segment": [0, img_num - 1],
        "tubedetr_frame_offset": TUBEDETR_FRAME_OFFSET,
        "st_frame": st_frame,
        "hcstvg_version": version,
    }
    for name in ("st_time", "ed_time"):
        if entry.get(name) is not None:
            extra[name] = as_float(entry[name], name)
    video_file = as_str(entry["video_file"], "video_file") if entry.get("video_file") is not None else key
    return check_query(GroundingQuery(
        qid=key,
        video=resolve(video_file),
        query=caption,
        task="stvg",
        fps=fps,
        num_frames=img_num,
        width=width,
        height=height,
        span_frames=(start, end),
        span_s=frames_to_seconds(start, end, fps),
        boxes=boxes,
        video_id=Path(video_file).stem,
        extra=extra,
    ))


def _read_video_parts(path: str | os.PathLike) -> dict[str, str]:
    """``video_part.json`` -> {file stem: sub-folder}; accepts either orientation of the mapping."""
    raw = load_json_file(path)
    if not isinstance(raw, Mapping):
        raise AnnotationError("video_part.json must be a JSON object", path)
    out: dict[str, str] = {}
    for part, names in raw.items():
        if isinstance(names, str):  # {stem: package}
            out[Path(str(part)).stem] = names
        elif isinstance(names, list):  # {package: [names]}
            for name in names:
                if not isinstance(name, str):
                    raise AnnotationError(f"package lists a non-name {name!r:.60}", path, part)
                out[Path(name).stem] = str(part)
        else:
            raise AnnotationError("value must be a list of names or a package name", path, part)
    return out


def write_hcstvg(path: str | os.PathLike, queries: Sequence[GroundingQuery], version: int = 1) -> None:
    """Write queries as a native HC-STVG JSON (the inverse of :func:`read_hcstvg`), atomically.

    The key is the qid (for real HC-STVG that is the video file name). Every frame of the span must
    have a box, since the native ``bbox`` list is contiguous. ``video_file`` is added when the
    video's file name differs from the qid and ``fps`` when it differs from ``img_num / 20``.
    """
    if version not in (1, 2):
        raise BenchmarkError(f"HC-STVG version must be 1 or 2, got {version!r}")
    doc: dict[str, dict[str, Any]] = {}
    for q in queries:
        if q.qid in doc:
            raise AnnotationError(f"duplicate qid {q.qid!r}: HC-STVG keys must be unique", path, q.qid)
        if q.span_frames is None or q.span_frames[1] <= q.span_frames[0]:
            raise AnnotationError("HC-STVG needs a non-empty span_frames", path, q.qid)
        start, end = q.span_frames
        missing = [f for f in range(start, end) if f not in q.boxes]
        if missing:
            raise AnnotationError(f"no box on span frame(s) {missing[:5]} (HC-STVG tubes are contiguous)", path, q.qid)
        if start < 0:
            raise AnnotationError(f"span starts at {start} < 0", path, q.qid)
        if min(q.num_frames, q.width, q.height) <= 0:
            raise AnnotationError("HC-STVG needs num_frames, width and height > 0", path, q.qid)
        xywh = xyxy_to_xywh([q.boxes[f] for f in range(start, end)]).tolist()
        fps = q.fps if q.fps > 0 else q.num_frames / HCSTVG_CLIP_SECONDS
        entry: dict[str, Any] = {"img_num": int(q.num_frames)}
        if version == 1:
            entry.update(width=int(q.width), height=int(q.height), caption=q.query)
        else:
            entry.update(img_size=[int(q.height), int(q.width)], English=q.query)
        entry.update(
            st_frame=start + 1,
            st_time=float(q.extra.get("st_time", frame_seconds(start, fps))),
            ed_time=float(q.extra.get("ed_time", frame_seconds(end - 1, fps))),
            bbox=xywh,
        )
        video_file = os.path.basename(q.video)
        if video_file != q.qid:
            entry["video_file"] = video_file
        if abs(fps - q.num_frames / HCSTVG_CLIP_SECONDS) > 1e-9:
            entry["fps"] = fps
        doc[q.qid] = entry
    write_json(path, doc)


def _read_version(version: int):
    def read(annotations, video_root=None, **kw):
        return read_hcstvg(annotations, video_root, version=version, **kw)

    return read


register_benchmark(BenchmarkSpec("hcstvg_v1", _read_version(1), sources=(
    DataSource("hcstvg_v1", "STVG_HCSTVG_V1_ANNOTATIONS", "STVG_HCSTVG_V1_VIDEOS",
               lmms_tasks={"stvg_hcstvg_v1": None}, what="HC-STVG v1 test.json"),
)))
register_benchmark(BenchmarkSpec("hcstvg_v2", _read_version(2), sources=(
    DataSource("hcstvg_v2", "STVG_HCSTVG_V2_ANNOTATIONS", "STVG_HCSTVG_V2_VIDEOS",
               options_env={"video_parts": "STVG_HCSTVG_V2_VIDEO_PARTS"},
               lmms_tasks={"stvg_hcstvg_v2": None}, what="HC-STVG v2 valv2.json"),
)))
