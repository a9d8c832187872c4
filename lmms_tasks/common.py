"""Task functions shared by every ``stvg_*`` lmms-eval task (referenced from the YAMLs as ``!function``).

Why one module: lmms-eval executes a task folder's ``utils.py`` once per tag as a standalone
module, so the logic lives here, is imported once, and keeps no mutable state except a load cache.

* Data: each task reads its benchmark's **native** annotation file named by an environment
  variable (:data:`TASK_SOURCES`, derived from the benchmark registry) through :func:`stvg_plugin.adapters.load_benchmark`. The YAML
  loads a one-row placeholder JSONL (so lmms-eval's dataset step stays local) and
  ``process_docs`` replaces it with one doc per query, carrying the whole unified record.
* Scoring: ``process_results`` rebuilds the query and the prediction and calls
  :func:`stvg_plugin.metrics.score_query`, the same code ``stvg evaluate`` runs.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import math
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from stvg_plugin.adapters.registry import DataSource, benchmark_specs, get_benchmark
from stvg_plugin.data import GroundingPrediction, GroundingQuery, StvgError
from stvg_plugin.formats.lmms_stvg_samples import DETAIL_METRIC  # the samples file's detail key: one home
from stvg_plugin.prompts import STOCK_BOX_SCALE_TEXT, stock_question

log = logging.getLogger("stvg.lmms")

# --------------------------------------------------------------------------- data sources


class TaskDataError(StvgError, ValueError):
    """A task's annotations or videos are not where its environment variables say."""


@dataclass(frozen=True)
class TaskSource:
    """One lmms-eval task: its benchmark, the data source it reads and the ``qtype`` it keeps (None: all)."""

    benchmark: str
    source: DataSource
    qtype: str | None = None


def _task_sources() -> tuple[dict[str, TaskSource], dict[str, tuple[str, ...]]]:
    """The ``stvg_*`` tasks and groups the benchmark registry declares (``DataSource.lmms_tasks``)."""
    tasks: dict[str, TaskSource] = {}
    groups: dict[str, tuple[str, ...]] = {}
    for spec in benchmark_specs():
        for src in spec.sources:
            tasks.update({task: TaskSource(spec.name, src, qtype) for task, qtype in src.lmms_tasks.items()})
            if src.lmms_group:
                groups[src.lmms_group] = tuple(src.lmms_tasks)
    return tasks, groups


TASK_SOURCES, TASK_GROUPS = _task_sources()
ON_ERROR_ENV = "STVG_LMMS_ON_ERROR"


def _env_path(var: str, task: str, what: str, kind: str) -> Path:
    value = os.environ.get(var, "").strip()
    if not value:
        raise TaskDataError(f"{task}: environment variable {var} is not set; set {var} to the {what}")
    path = Path(value).expanduser()
    ok = path.is_dir() if kind == "dir" else path.is_file()
    if not ok:
        raise TaskDataError(f"{task}: {var}={value} is not an existing {kind}; set {var} to the {what}")
    return path


def resolve_source(task: str) -> tuple[Path, Path | None, dict[str, Any]]:
    """``(annotations file, video folder or None, load_benchmark keywords)`` for ``task``, checked."""
    src = TASK_SOURCES[task].source
    if src.annotations_file:
        folder = _env_path(src.annotations_env, task, src.what, "dir")
        annotations = folder / src.annotations_file
        if not annotations.is_file():
            raise TaskDataError(
                f"{task}: {src.annotations_env}={folder} holds no {src.annotations_file}; set it to the {src.what}"
            )
    else:
        annotations = _env_path(src.annotations_env, task, src.what, "file")
    videos = _env_path(src.videos_env, task, "folder of the videos", "dir") if src.videos_env else None
    kwargs: dict[str, Any] = {}
    for key, var in src.options_env.items():
        if os.environ.get(var, "").strip():
            kwargs[key] = str(_env_path(var, task, key, "dir" if key in src.dir_options else "file"))
    spec = get_benchmark(TASK_SOURCES[task].benchmark)
    if spec.needs_one_option and not kwargs:
        raise TaskDataError(f"{task}: {spec.needs_one_option}")
    kwargs.update(spec.task_options)
    on_error = os.environ.get(ON_ERROR_ENV, "raise").strip() or "raise"
    kwargs["on_error"] = on_error
    return annotations, videos, kwargs


def expand_task_names(patterns: Iterable[str]) -> list[str]:
    """The ``stvg_*`` tasks a ``--tasks`` value selects (names, groups, wildcards); others are ignored."""
    out: list[str] = []
    for pat in patterns:
        pat = pat.strip()
        names = TASK_GROUPS.get(pat) or fnmatch.filter(TASK_SOURCES, pat)
        if not names:
            for group, members in TASK_GROUPS.items():
                if fnmatch.fnmatchcase(group, pat):
                    names = [*names, *members]
        out.extend(n for n in names if n not in out)
    return out


_LOAD_LOCK = threading.Lock()
_LOADED: dict[tuple, list[GroundingQuery]] = {}


def load_task_queries(task: str) -> list[GroundingQuery]:
    """The task's queries (cached per process: the two VidSTG tasks share one file read)."""
    from stvg_plugin.adapters import load_benchmark

    src = TASK_SOURCES[task]
    annotations, videos, kwargs = resolve_source(task)
    key = (src.benchmark, str(annotations), str(videos), tuple(sorted((k, str(v)) for k, v in kwargs.items())))
    with _LOAD_LOCK:
        if key not in _LOADED:
            skipped: list = []
            queries = load_benchmark(src.benchmark, str(annotations), str(videos) if videos else None,
                                     skipped=skipped, **kwargs)
            for s in skipped:
                log.warning("%s: skipped %s [%s]: %s", task, s.path, s.entry, s.reason)
            if skipped:
                log.warning("%s: %d annotation entries skipped (%s=skip)", task, len(skipped), ON_ERROR_ENV)
            _LOADED[key] = queries
        queries = _LOADED[key]
    if src.qtype is not None:
        queries = [q for q in queries if q.qtype == src.qtype]
    if not queries:
        raise TaskDataError(f"{task}: {annotations} holds no {src.qtype or ''} queries".replace("  ", " "))
    return queries


def query_to_doc(query: GroundingQuery, benchmark: str, protocol: str) -> dict[str, Any]:
    """One lmms-eval doc: flat fields for prompts and models, plus the full record for scoring."""
    return {
        "qid": query.qid,
        "video": query.video,
        "query": query.query,
        "task_type": query.task,
        "qtype": query.qtype or "",
        "fps": float(query.fps),
        "num_frames": int(query.num_frames),
        "width": int(query.width),
        "height": int(query.height),
        "duration_s": float(query.duration_s),
        "benchmark": benchmark,
        "protocol": protocol,
        "record": json.dumps(query.to_json(), ensure_ascii=False),
    }


def load_docs(task: str, dataset: Any = None) -> Any:
    """``process_docs``: ignore the placeholder rows and return the task's queries as a Dataset."""
    import datasets

    from stvg_plugin.adapters import default_protocol

    src = TASK_SOURCES[task]
    protocol = default_protocol(src.benchmark)
    queries = load_task_queries(task)
    missing = sorted({q.video for q in queries if not os.path.isfile(q.video)})
    if missing:
        log.warning("%s: %d videos missing (their queries will score 0): %s", task, len(missing), ", ".join(missing[:10]))
    return datasets.Dataset.from_list([query_to_doc(q, src.benchmark, protocol) for q in queries])


def __getattr__(name: str) -> Any:
    """``process_docs_<task without the stvg_ prefix>`` (what each task YAML names) for every registered task,
    so a benchmark added to the registry needs no line here."""
    task = "stvg_" + name.removeprefix("process_docs_")
    if name.startswith("process_docs_") and task in TASK_SOURCES:
        return partial(load_docs, task)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def query_from_doc(doc: dict) -> GroundingQuery:
    return GroundingQuery.from_json(json.loads(doc["record"]), entry=f"qid {doc.get('qid')}")


# --------------------------------------------------------------------------- prompts (stock models)

# The coordinate system a stock model is asked to answer in. Chosen per model through lmms-eval's own
# ``lmms_eval_specific_kwargs`` (a key equal to ``--model`` wins, see ``_default_template_stvg_yaml``):
# ``box_scale`` is a key of ``stvg_plugin.prompts.STOCK_BOX_SCALE_TEXT`` (the prompt texts live there);
# ``answer_frame: qwen2_5_vl`` says the model's pixels are those of Qwen2.5-VL's smart-resized input
# (``max_pixels`` / ``min_pixels`` of the stock model's defaults).

# What the prompt of each doc asked for, recorded by ``doc_to_text`` for ``process_results`` (which
# lmms-eval calls without the model's kwargs). Both run in the same process for the same doc, also
# under data parallelism (each rank scores the docs it prompted). Absent -> the default (pixels).
_ASKED_LOCK = threading.Lock()
_ASKED: dict[tuple[str, str], dict[str, Any]] = {}


# Videos that doc_to_visual found unreadable, with the decoder's reason, for process_results (same
# process, as _ASKED above).
_UNREADABLE: dict[tuple[str, str], str] = {}


def doc_to_visual(doc: dict) -> list[str]:
    """The video for stock lmms-eval models, or no visual when it cannot be decoded.

    A stock model (e.g. lmms-eval's ``qwen2_5_vl``) that meets a missing or corrupt file raises, and
    one bad file aborts the whole run. The first and last frames are decoded here (header, codec and
    end of stream); an unreadable video is named in the log and handed over as no visual, so the
    model answers from the text and :func:`process_results` scores that query 0 with the decoder's
    reason in ``error``, as the stvg models' error predictions are. (The stvg models read
    ``doc["video"]`` themselves and never call this.)
    """
    from stvg_plugin.video import VideoReadError, sample_video

    video = str(doc["video"])
    try:
        sample_video(video, num_frames=2, size=(16, 16))
    except VideoReadError as exc:
        log.warning("%s (%s): %s; the model gets no video and the query scores 0", doc.get("qid"), video, exc.reason)
        with _ASKED_LOCK:
            _UNREADABLE[(str(doc.get("qid")), video)] = str(exc)
        return []
    return [video]


def doc_to_text(doc: dict, lmms_eval_specific_kwargs: dict | None = None) -> str:
    """Prompt for stock lmms-eval models; the stvg models ground ``doc["query"]`` with their own prompt.

    The answer format is one box per second of the span; :func:`process_results` fills the frames
    between those boxes (linear interpolation, nearest beyond the first/last one, as STCAT fills).
    """
    kw = lmms_eval_specific_kwargs or {}
    box_scale = str(kw.get("box_scale") or "pixels")
    if box_scale not in STOCK_BOX_SCALE_TEXT:
        raise TaskDataError(f"lmms_eval_specific_kwargs box_scale must be one of {sorted(STOCK_BOX_SCALE_TEXT)}, "
                            f"got {box_scale!r}")
    asked = {k: kw[k] for k in ("box_scale", "answer_frame", "max_pixels", "min_pixels") if kw.get(k) is not None}
    # a model answering in pixels of its resized input (Qwen2.5-VL) is told that input's size, so the
    # prompt asks for the very frame the scoring rescales from (the original size would contradict it)
    processed = _processed_size(asked, int(doc["height"] or 0), int(doc["width"] or 0))
    height, width = processed or (doc["height"], doc["width"])
    text = stock_question(doc["task_type"], query=doc["query"], duration_s=doc["duration_s"], width=width,
                          height=height, box_scale=box_scale)
    with _ASKED_LOCK:
        _ASKED[(str(doc.get("qid")), str(doc.get("video")))] = asked
    return f"{kw.get('pre_prompt', '')}{text}{kw.get('post_prompt', '')}"


def asked_coordinates(doc: dict, query: GroundingQuery) -> tuple[str, tuple[int, int] | None]:
    """``(box_scale, processed (height, width) or None)`` the doc's prompt asked its answer in."""
    with _ASKED_LOCK:
        asked = dict(_ASKED.get((str(doc.get("qid")), str(doc.get("video"))), {}))
    box_scale = str(asked.get("box_scale") or "pixels")
    return box_scale, _processed_size(asked, int(query.height or 0), int(query.width or 0))


def _processed_size(asked: dict[str, Any], height: int, width: int) -> tuple[int, int] | None:
    """(height, width) of the input a model answers its pixels in, when it is not the video's own."""
    if asked.get("answer_frame") != "qwen2_5_vl" or not (height and width):
        return None
    from stvg_plugin.models.families import get_family

    return get_family("qwen2_5_vl").answer_frame_size(
        height, width, max_pixels=asked.get("max_pixels"), min_pixels=asked.get("min_pixels"))


def doc_to_target(doc: dict) -> str:
    """A readable GT summary for the samples log (``target``); scoring uses the full record."""
    record = json.loads(doc["record"])
    return json.dumps({"span_frames": record.get("span_frames"), "span_s": record.get("span_s")})


# --------------------------------------------------------------------------- scoring

COUNT_METRICS = ("parse_failed", "missing_video", "error")


def metric_names(protocol: str) -> dict[str, str]:
    """lmms-eval metric name -> key of ``score_query``'s row: exactly the summary keys of ``evaluate``."""
    from stvg_plugin.metrics.engine import metric_names as engine_metric_names

    return {summary_key: row_key for row_key, summary_key in engine_metric_names(protocol)}


def prediction_from_answer(
    answer: str, query: GroundingQuery, box_scale: str | None = None, processed_size: tuple[int, int] | None = None
) -> GroundingPrediction:
    """The stvg models answer ``GroundingPrediction.to_json()``; anything else is read as free text.

    A free-text answer's boxes (one per second, in ``box_scale``; pixels of ``processed_size`` when
    given) are filled over its span by :func:`fill_prediction_boxes`, as the task's prompt documents.
    """
    from stvg_plugin.models.decoding import fill_prediction_boxes
    from stvg_plugin.parsing import CoordHint, parse_answer

    text = answer if isinstance(answer, str) else ""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            obj = json.loads(stripped)
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, dict) and "qid" in obj:
            pred = GroundingPrediction.from_json(obj)
            if pred.qid != query.qid:
                raise TaskDataError(f"answer is for qid {pred.qid!r}, expected {query.qid!r}")
            return pred
    parsed = parse_answer(
        text,
        duration_s=query.duration_s,
        fps=query.fps,
        num_frames=query.num_frames,
        width=query.width,
        height=query.height,
        processed_size=processed_size,
        coord_hint=CoordHint(time_unit="seconds", box_scale=box_scale),
    )
    prediction = parsed.to_prediction(query.qid)
    return fill_prediction_boxes(prediction, query.num_frames, query.width, query.height)


def _finite(x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return 0.0
    return v if math.isfinite(v) else 0.0


def process_results(doc: dict, results: list[str]) -> dict[str, Any]:
    """Per-query metrics from the core scorer, plus detail keys that ``--log_samples`` keeps.

    Never raises (lmms-eval would retry it for ~8 s and then abort the run): a failure scores 0 and
    sets ``error``; an unreadable answer scores 0 and sets ``parse_failed``. Thread-safe: no shared
    mutable state.
    """
    from stvg_plugin.metrics import default_protocol, score_query

    protocol = doc.get("protocol") or default_protocol()
    names = metric_names(protocol)
    answer = results[0] if results else ""
    out: dict[str, Any] = {name: 0.0 for name in names}
    out.update({"parse_failed": 0.0, "missing_video": 0.0, "error": 0.0})
    out.update({"qid": doc.get("qid"), "video": doc.get("video"), "prediction": None, "failure": None})
    try:
        query = query_from_doc(doc)
        out["missing_video"] = float(not os.path.isfile(query.video))
        prediction = prediction_from_answer(answer, query, *asked_coordinates(doc, query))
        with _ASKED_LOCK:
            unreadable = _UNREADABLE.get((str(doc.get("qid")), str(doc.get("video"))))
        if unreadable and not prediction.error:  # the model answered without the video (doc_to_visual)
            prediction = GroundingPrediction(qid=prediction.qid, raw_text=answer, error=unreadable)
        out["prediction"] = prediction.to_json()
        out["parse_failed"] = float(prediction.parse_failed)
        if prediction.error:
            out["error"] = 1.0
            out["failure"] = prediction.error
        row = score_query(query, prediction, protocol=protocol)
        out["parse_failed"] = float(bool(row.get("parse_failed")))
        for name, key in names.items():
            if row.get(key) is None:  # undefined for this query (e.g. V-STaR item without GT boxes):
                del out[name]  # left out of the mean, as evaluate() skips it
            else:
                out[name] = _finite(row[key])
    except Exception as exc:  # any failure must score 0 and be named, never abort the run
        out.update({name: 0.0 for name in names})
        out["error"] = 1.0
        out["failure"] = f"{type(exc).__name__}: {exc}"
        if out["prediction"] is None:
            out["prediction"] = GroundingPrediction(qid=str(doc.get("qid")), raw_text=answer, error=out["failure"]).to_json()
    return out


# --------------------------------------------------------------------------- what lmms-eval records

def count_set(items: list[Any]) -> float:
    """Aggregation of the count metrics: how many samples recorded something (a failure, a missing file).

    Their per-sample values are the failure text / the missing path or ``None``, not 0/1 floats: lmms-eval
    computes a standard error only for numeric items, and a count has none.
    """
    return float(sum(item is not None for item in items))


def lmms_process_results(doc: dict, results: list[str]) -> dict[str, Any]:
    """``process_results`` as the task YAMLs name it: :func:`process_results` reshaped for lmms-eval's records.

    lmms-eval turns every returned key into a ``"<key>,none"`` entry of the results file (``[]`` for a key
    without an aggregation), so every key here is a listed metric: the scores (means), ``parse_failed``
    (a rate), ``error`` and ``missing_video`` (counts, see :func:`count_set`) and ``queries``, whose
    per-sample value is the query's detail record (``qid``, ``video``, the scored ``prediction``) kept in
    the ``--log_samples`` file and whose aggregate is the number of queries scored.
    """
    out = process_results(doc, results)
    failure = out.pop("failure", None)
    detail = {key: out.pop(key, None) for key in ("qid", "video", "prediction")}
    out["error"] = (failure or "error") if out.get("error") else None
    out["missing_video"] = detail["video"] if out.get("missing_video") else None
    out[DETAIL_METRIC] = detail
    return out
