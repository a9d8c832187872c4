"""``stvg evaluate``: score a predictions file against a benchmark's ground truth.

Everything is computed before anything is written, and each output is written atomically, so a
failure never leaves a partial ``summary.json``.

Keys beyond the data ones (conf/eval/default.yaml): ``protocol``; ``predictions_format`` (``auto`` or
one of :data:`stvg_plugin.formats.PREDICTION_FORMATS`: an official evaluator's own results file is
read as it is); ``repair`` (the project's box / span repairs, off: official numbers); ``lmms_compat``
(tvg: lmms-eval's Charades parser and duplicate merging); ``vstar_accuracy`` (V-STaR "what" accuracy
when the results carry no judge ratings); ``judge`` (V-STaR "what" judge: ``hf:<dir>`` or
``openai:<url>#<model>``); ``multi_boxes_policy`` (VUE-STG: first / last / union) and ``vue_step_ms``
(its time bin, 1000 as officially).
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from stvg_plugin.adapters import default_protocol
from stvg_plugin.answer_report import answer_report, format_answer_report
from stvg_plugin.commands.common import ConfigError, load_queries_from_cfg, require_path
from stvg_plugin.data import AnnotationError, locate_error, write_json, write_jsonl
from stvg_plugin.formats import PREDICTION_FORMATS, detect_format, read_predictions_file
from stvg_plugin.formats.vue_stg_csv import read_vue_stg_benchmark
from stvg_plugin.metrics import evaluate, protocol_names
from stvg_plugin.metrics.vstar_judge import make_judge

log = logging.getLogger("stvg.evaluate")

MAX_LISTED = 20  # errored queries named in the printed summary
VUE_STG_BENCHMARK = "vue_stg"  # benchmark=vue_stg annotations=<.../tubes.csv>: read by stvg_plugin.formats


def _as_bool(cfg: DictConfig, key: str) -> bool:
    value = cfg.get(key, False)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    return value


def run(cfg: DictConfig, output_dir: Path) -> dict:
    predictions = require_path(cfg, "predictions")
    require_path(cfg, "annotations")  # named before any work on the predictions
    fmt = cfg.get("predictions_format") or "auto"
    if fmt not in PREDICTION_FORMATS:
        raise ConfigError(f"predictions_format={fmt} is not one of {', '.join(PREDICTION_FORMATS)}")
    if fmt == "auto":
        fmt = detect_format(predictions)
    if fmt == "vstar" and cfg.benchmark == "vstar":
        # every item is a query: the scorer skips empty answer_vqa items itself and counts them in
        # the accuracy's denominator, as eval.py does
        cfg.benchmark_kwargs = {**(cfg.get("benchmark_kwargs") or {}), "require_answer_vqa": False}
    if cfg.benchmark == VUE_STG_BENCHMARK:  # the VUE-STG CSVs (video.csv, query.csv, tubes.csv)
        queries = read_vue_stg_benchmark(require_path(cfg, "annotations"))
        protocol = cfg.get("protocol") or "vue_stg"
    else:
        queries = load_queries_from_cfg(cfg)
        protocol = cfg.get("protocol") or default_protocol(cfg.benchmark)
    if protocol not in protocol_names():
        raise ConfigError(f"protocol={protocol} is not one of {', '.join(protocol_names())}")
    thresholds = tuple(float(t) for t in cfg.get("thresholds") or (0.3, 0.5))
    accuracy = cfg.get("vstar_accuracy")
    if accuracy is not None and not (isinstance(accuracy, (int, float)) and 0 <= accuracy <= 1):
        raise ConfigError(f"vstar_accuracy must be a fraction in [0, 1], got {accuracy!r}")
    answers = list(read_predictions_file(predictions, fmt, queries))  # scored, then reported per family
    try:
        result = evaluate(
            queries,
            answers,
            protocol=protocol,
            thresholds=thresholds,
            box_fill=cfg.get("box_fill", "none"),
            lmms_compat=_as_bool(cfg, "lmms_compat"),
            repair=_as_bool(cfg, "repair"),
            vstar_accuracy=float(accuracy) if accuracy is not None else None,
            vue_multi_boxes_policy=cfg.get("multi_boxes_policy") or "first",
            vstar_judge=make_judge(cfg.judge) if cfg.get("judge") else None,
            vue_step_ms=int(cfg.get("vue_step_ms") or 1000),
        )
    except AnnotationError as exc:  # a protocol names the qid; say which file and line it came from
        raise locate_error(exc, queries) from None
    summary = dict(result.summary)
    summary.update({"benchmark": cfg.benchmark, "annotations": str(cfg.annotations), "predictions": str(predictions),
                    "predictions_format": fmt})  # fmt: skip
    by_family = answer_report(answers)  # text answers; {} otherwise
    if by_family:
        summary["answers_by_family"] = by_family
    write_jsonl(output_dir / "per_query.jsonl", result.per_query)
    write_json(output_dir / "summary.json", summary)
    print(result.to_table())
    for line in format_answer_report(by_family):
        print(line)
    if summary.get("repair"):
        print("repair=true: boxes with swapped corners were put in order, NaN / zero-area boxes rejected and "
              "reversed spans swapped (the official evaluators do none of this; see boxes_* / num_repaired_spans)")
    crashed = summary.get("num_crash_scored_zero", 0) + summary.get("num_missing", 0)
    if crashed:
        print(f"{crashed} queries or answers would stop or be missing in the official evaluator "
              "(missing prediction or unreadable answer): scored 0 and counted (num_missing, num_crash_scored_zero)")
    failed = [row for row in result.per_query if row.get("error")]
    if failed:
        print(f"{len(failed)} queries have no answer because of an error (scored 0):")
        for row in failed[:MAX_LISTED]:
            print(f"  {row['qid']}: {row['error']}")
        if len(failed) > MAX_LISTED:
            print(f"  ... and {len(failed) - MAX_LISTED} more (see per_query.jsonl, key 'error')")
    print(f"wrote {output_dir / 'summary.json'} and {output_dir / 'per_query.jsonl'}")
    return summary
