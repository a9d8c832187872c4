"""``stvg evaluate``: score a predictions JSONL against a benchmark's ground truth.

Everything is computed before anything is written, and each output is written atomically, so a
failure never leaves a partial ``summary.json``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from stvg_plugin.adapters import default_protocol
from stvg_plugin.answer_report import answer_report, format_answer_report
from stvg_plugin.commands.common import ConfigError, load_queries_from_cfg, require_path
from stvg_plugin.data import iter_predictions, write_json, write_jsonl
from stvg_plugin.metrics import PROTOCOLS, evaluate

log = logging.getLogger("stvg.evaluate")

MAX_LISTED = 20  # errored queries named in the printed summary


def run(cfg: DictConfig, output_dir: Path) -> dict:
    predictions = require_path(cfg, "predictions")
    queries = load_queries_from_cfg(cfg)
    protocol = cfg.get("protocol") or default_protocol(cfg.benchmark)
    if protocol not in PROTOCOLS:
        raise ConfigError(f"protocol={protocol} is not one of {', '.join(PROTOCOLS)}")
    thresholds = tuple(float(t) for t in cfg.get("thresholds") or (0.3, 0.5))
    result = evaluate(queries, iter_predictions(predictions), protocol=protocol, thresholds=thresholds,
                      box_fill=cfg.get("box_fill", "none"))
    summary = dict(result.summary)
    summary.update({"benchmark": cfg.benchmark, "annotations": str(cfg.annotations), "predictions": str(predictions)})
    by_family = answer_report(iter_predictions(predictions))  # text answers only; {} for the model core
    if by_family:
        summary["answers_by_family"] = by_family
    write_jsonl(output_dir / "per_query.jsonl", result.per_query)
    write_json(output_dir / "summary.json", summary)
    print(result.to_table())
    for line in format_answer_report(by_family):
        print(line)
    failed = [row for row in result.per_query if row.get("error")]
    if failed:
        print(f"{len(failed)} queries have no answer because of an error (scored 0):")
        for row in failed[:MAX_LISTED]:
            print(f"  {row['qid']}: {row['error']}")
        if len(failed) > MAX_LISTED:
            print(f"  ... and {len(failed) - MAX_LISTED} more (see per_query.jsonl, key 'error')")
    print(f"wrote {output_dir / 'summary.json'} and {output_dir / 'per_query.jsonl'}")
    return summary
