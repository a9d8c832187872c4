"""``stvg report``: plots and rendered tubes for a scored run, for people who would rather look.

Writes ``output_dir/index.html`` with a vIoU histogram, a tIoU-vs-vIoU scatter, GT-vs-predicted
span timelines of the worst queries, and ``num_videos`` of those worst queries rendered with the
GT (green) and predicted (red) tubes drawn.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from stvg_plugin.commands.common import load_queries_from_cfg, require_path
from stvg_plugin.data import iter_jsonl, read_predictions


def run(cfg: DictConfig, output_dir: Path) -> dict:
    predictions = read_predictions(require_path(cfg, "predictions"))
    queries = load_queries_from_cfg(cfg)
    per_query = None
    if cfg.get("per_query"):
        per_query = [row for _, row in iter_jsonl(require_path(cfg, "per_query"))]
    from stvg_plugin.viz.report import write_report  # matplotlib: imported after the checks

    paths = write_report(queries, output_dir, predictions, per_query, protocol=cfg.get("protocol"),
                         render_worst=int(cfg.num_videos), worst_k=int(cfg.worst_k))
    print(f"wrote {paths['index']}")
    return paths
