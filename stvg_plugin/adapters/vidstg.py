"""VidSTG native JSON (+ VidOR trajectories) <-> unified queries.

Source convention (benchmarks.md §4): ``{train,val,test}_annotations.json`` is a list of entries,
each with video info (``vid``, ``frame_count``, ``fps``, ``width``, ``height``), ``used_segment`` and
``temporal_gt`` as ``{begin_fid, end_fid}`` (0-based frames, ``end_fid`` **exclusive**, as TubeDETR
reads them), and sentences in ``captions`` (declarative) and ``questions`` (interrogative), each
``{description, type, target_id}``. Boxes live in VidOR: per frame ``[{tid, bbox: {xmin, ymin,
xmax, ymax}}]``, or in TubeDETR's processed ``trajectories`` dict ``{vid: {tid: {frame: {bbox:
[x, y, w, h]}}}}``.

Unified record, one per sentence: qid ``f"{vid}_{entry_index}_{d|i}{k}"`` (``entry_index`` = the
entry's position in the list, ``d``/``i`` = declarative/interrogative, ``k`` = the sentence's position
in ``captions``/``questions``), ``qtype`` = ``"declarative"``/``"interrogative"``, GT span =
``temporal_gt`` not clipped to the segment (TubeDETR), ``extra["segment"] = [begin_fid, end_fid]`` of
``used_segment``, boxes = the target trajectory's boxes on span frames that have one.
"""

from __future__ import annotations

import os
from collections import OrderedDict
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
    frame_span_seconds,
    load_json_file,
)
from stvg_plugin.adapters.registry import BenchmarkSpec, DataSource, register_benchmark
from stvg_plugin.data import AnnotationError, GroundingQuery, check_query, write_json
from stvg_plugin.util.box_ops import xywh_to_xyxy, xyxy_to_xywh

QTYPES = (("captions", "declarative"), ("questions", "interrogative"))


def read_vidstg(
    annotations: str | os.PathLike,
    video_root: str | os.PathLike | None = None,
    *,
    trajectories: str | os.PathLike | None = None,
    vidor_dir: str | os.PathLike | None = None,
    on_error: str = "raise",
    skipped: list | None = None,
) -> list[GroundingQuery]:
    """Read a VidSTG split; boxes from ``trajectories`` (TubeDETR dict file) or ``vidor_dir`` (VidOR JSONs).

    Exactly one box source is required. VidOR files are found recursively as ``<vid>.json``.
    """
    if (trajectories is None) == (vidor_dir is None):
        raise BenchmarkError("vidstg needs exactly one box source: trajectories=<file> or vidor_dir=<folder>")
    raw = load_json_file(annotations)
    if isinstance(raw, Mapping) and "videos" in raw:
        raise AnnotationError(
            "this looks like a TubeDETR-processed file; pass the native *_annotations.json", annotations
        )
    if not isinstance(raw, list):
        raise AnnotationError(f"expected a JSON list of entries, got {type(raw).__name__}", annotations)
    boxes_source = _TubeDetrTrajectories(trajectories) if trajectories is not None else _VidorTrajectories(vidor_dir)
    resolve = VideoResolver(video_root)
    runner = EntryRunner(annotations, on_error, skipped)
    out: list[GroundingQuery] = []
    for index, entry in enumerate(raw):
        queries = runner.run(f"index {index}", _parse_entry, index, entry, boxes_source, resolve)
        if queries is not None:
            out.extend(queries)
    return out


def _parse_entry(index: int, entry: Any, boxes_source: Any, resolve: VideoResolver) -> list[GroundingQuery]:
    entry = as_mapping(entry, "entry")
    vid = as_str(field(entry, "vid"), "vid")
    fps = as_positive(field(entry, "fps"), "fps", as_float)
    frame_count = as_positive(field(entry, "frame_count"), "frame_count")
    width = as_positive(field(entry, "width"), "width")
    height = as_positive(field(entry, "height"), "height")
    seg = _fid_pair(field(entry, "used_segment"), "used_segment")
    gt = _fid_pair(field(entry, "temporal_gt"), "temporal_gt")
    sentences = [(qtype, k, s) for key, qtype in QTYPES for k, s in enumerate(as_list(entry.get(key) or [], key))]
    if not sentences:
        raise AnnotationError("no sentence in 'captions' or 'questions'")
    video_rel = as_str(entry["video_path"], "video_path") if entry.get("video_path") is not None else None
    out = []
    for qtype, k, sentence in sentences:
        where = f"{'captions' if qtype == 'declarative' else 'questions'}[{k}]"
        sentence = as_mapping(sentence, where)
        target = as_int(field(sentence, "target_id"), f"{where}.target_id")
        track = boxes_source.track(vid, target)
        video_rel = video_rel or boxes_source.video_path(vid)
        out.append(check_query(
            GroundingQuery(
                qid=f"{vid}_{index}_{qtype[0]}{k}",
                video=resolve(video_rel) if video_rel else resolve(vid, default_ext=".mp4"),
                query=as_str(field(sentence, "description"), f"{where}.description"),
                task="stvg",
                fps=fps,
                num_frames=frame_count,
                width=width,
                height=height,
                span_frames=gt,
                span_s=frame_span_seconds(*gt, fps),
                boxes={f: track[f] for f in range(*gt) if f in track},
                qtype=qtype,
                video_id=vid,
                extra={"segment": list(seg), "target_id": target, "entry_index": index},
            )
        ))
    return out


def _fid_pair(raw: Any, what: str) -> tuple[int, int]:
    raw = as_mapping(raw, what)
    begin = as_int(field(raw, "begin_fid"), f"{what}.begin_fid")
    end = as_int(field(raw, "end_fid"), f"{what}.end_fid")
    if begin < 0 or end < begin:
        raise AnnotationError(f"{what} must satisfy 0 <= begin_fid <= end_fid, got [{begin}, {end}]")
    return begin, end


class _TubeDetrTrajectories:
    """TubeDETR's ``{vid: {tid: {frame: {bbox: xywh}}}}`` (alone or under a ``trajectories`` key)."""

    def __init__(self, path: str | os.PathLike):
        self.path = path
        raw = load_json_file(path)
        if isinstance(raw, Mapping) and isinstance(raw.get("trajectories"), Mapping):
            raw = raw["trajectories"]
        if not isinstance(raw, Mapping):
            raise AnnotationError("trajectories must be a JSON object {vid: {tid: {frame: {bbox}}}}", path)
        self.raw = raw
        self.cache: dict[tuple[str, int], dict[int, list[float]]] = {}

    def video_path(self, vid: str) -> str | None:
        return None

    def track(self, vid: str, tid: int) -> dict[int, list[float]]:
        if (vid, tid) not in self.cache:
            per_vid = self.raw.get(vid)
            if per_vid is None:
                raise AnnotationError(f"video {vid!r} not in trajectories file {self.path}")
            per_tid = as_mapping(per_vid, f"trajectories[{vid}]").get(str(tid))
            if per_tid is None:
                raise AnnotationError(f"target_id {tid} has no trajectory for video {vid!r}")
            frames = as_mapping(per_tid, f"trajectories[{vid}][{tid}]")
            track = {}
            for frame, rec in frames.items():
                xywh = as_box(field(as_mapping(rec, f"frame {frame}"), "bbox"), f"frame {frame} bbox")
                track[as_int(frame, "frame key")] = [float(v) for v in xywh_to_xyxy(xywh).tolist()]
            self.cache[(vid, tid)] = track
        return self.cache[(vid, tid)]


class _VidorTrajectories:
    """VidOR per-video annotation JSONs under a folder, found recursively by ``<vid>.json``."""

    def __init__(self, folder: str | os.PathLike):
        root = Path(folder)
        if not root.is_dir():
            raise AnnotationError("VidOR annotation folder not found", root)
        self.index = {}
        for p in sorted(root.rglob("*.json")):
            self.index.setdefault(p.stem, p)
        self.recent: OrderedDict[str, Mapping] = OrderedDict()  # VidOR files are large: keep a few

    def _load(self, vid: str) -> Mapping:
        if vid in self.recent:
            self.recent.move_to_end(vid)
            return self.recent[vid]
        path = self.index.get(vid)
        if path is None:
            raise AnnotationError(f"no VidOR annotation {vid}.json under the VidOR folder")
        raw = load_json_file(path)
        if not isinstance(raw, Mapping) or not isinstance(raw.get("trajectories"), list):
            raise AnnotationError("VidOR annotation needs a 'trajectories' list (one list per frame)", path)
        self.recent[vid] = raw
        if len(self.recent) > 8:
            self.recent.popitem(last=False)
        return raw

    def video_path(self, vid: str) -> str | None:
        path = self._load(vid).get("video_path")
        return path if isinstance(path, str) else None

    def track(self, vid: str, tid: int) -> dict[int, list[float]]:
        track = {}
        for frame, objects in enumerate(self._load(vid)["trajectories"]):
            for obj in as_list(objects, f"trajectories[{frame}]"):
                obj = as_mapping(obj, f"trajectories[{frame}] item")
                if as_int(field(obj, "tid"), "tid") == tid:
                    b = as_mapping(field(obj, "bbox"), f"trajectories[{frame}] bbox")
                    track[frame] = [as_float(field(b, k), f"bbox.{k}") for k in ("xmin", "ymin", "xmax", "ymax")]
        if not track:
            raise AnnotationError(f"target_id {tid} has no trajectory for video {vid!r}")
        return track


def write_vidstg(
    path: str | os.PathLike,
    queries: Sequence[GroundingQuery],
    trajectories_path: str | os.PathLike,
) -> None:
    """Write queries as a native VidSTG list plus a TubeDETR-style trajectories file, atomically.

    One entry per query with a single sentence (``captions`` or ``questions`` by ``qtype``); reading
    it back yields qids ``f"{video_id}_{i}_{d|i}0"``. ``target_id`` comes from ``extra`` (default 0);
    the segment from ``extra["segment"]`` (default the whole video). Queries sharing a video and
    target must agree on the boxes they share.
    """
    entries = []
    tracks: dict[str, dict[str, dict[str, dict[str, list[float]]]]] = {}
    for q in queries:
        if q.span_frames is None:
            raise AnnotationError("VidSTG needs span_frames", path, q.qid)
        if q.qtype not in ("declarative", "interrogative"):
            raise AnnotationError(f"qtype must be declarative or interrogative, got {q.qtype!r}", path, q.qid)
        vid = q.video_id or Path(q.video).stem
        target = int(q.extra.get("target_id", 0))
        seg = q.extra.get("segment", [0, q.num_frames])
        sentence = {"description": q.query, "type": "", "target_id": target}
        entries.append(
            {
                "vid": vid,
                "frame_count": int(q.num_frames),
                "fps": float(q.fps),
                "width": int(q.width),
                "height": int(q.height),
                "used_segment": {"begin_fid": int(seg[0]), "end_fid": int(seg[1])},
                "temporal_gt": {"begin_fid": int(q.span_frames[0]), "end_fid": int(q.span_frames[1])},
                "captions": [sentence] if q.qtype == "declarative" else [],
                "questions": [sentence] if q.qtype == "interrogative" else [],
                "subject/objects": [{"tid": target, "category": ""}],
            }
        )
        track = tracks.setdefault(vid, {}).setdefault(str(target), {})
        for frame, box in sorted(q.boxes.items()):
            xywh = [float(v) for v in xyxy_to_xywh(box).tolist()]
            if str(frame) in track and track[str(frame)]["bbox"] != xywh:
                raise AnnotationError(f"conflicting box at frame {frame} for {vid} target {target}", path, q.qid)
            track[str(frame)] = {"bbox": xywh}
    write_json(trajectories_path, tracks)
    write_json(path, entries)


register_benchmark(BenchmarkSpec(
    "vidstg",
    read_vidstg,
    sources=(
        DataSource(
            "vidstg", "STVG_VIDSTG_ANNOTATIONS", "STVG_VIDSTG_VIDEOS",
            options_env={"trajectories": "STVG_VIDSTG_TRAJECTORIES", "vidor_dir": "STVG_VIDSTG_VIDOR_DIR"},
            dir_options=("vidor_dir",),
            lmms_tasks={"stvg_vidstg_declarative": "declarative", "stvg_vidstg_interrogative": "interrogative"},
            lmms_group="stvg_vidstg", what="VidSTG test_annotations.json",
        ),
    ),
    needs_one_option="VidSTG boxes need STVG_VIDSTG_TRAJECTORIES (TubeDETR trajectories file) "
    "or STVG_VIDSTG_VIDOR_DIR (VidOR annotation folder)",
))
