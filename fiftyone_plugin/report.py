"""The report of :mod:`stvg_plugin.viz.report` for a FiftyOne dataset/view holding a prediction run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from stvg_plugin.metrics import default_protocol
from stvg_plugin.viz.report import write_report


def write_dataset_report(view: Any, out_dir: str | os.PathLike, *, pred_field: str = "pred", gt_field: str = "gt",
                         protocol: str | None = None, **kwargs: Any) -> dict[str, Path]:
    """Read GT and the ``pred_field`` run off ``view`` and write the core report into ``out_dir``."""
    from .labels import predictions_from_view, queries_from_view

    info = view._dataset.info.get("stvg") or {}
    return write_report(queries_from_view(view, gt_field), out_dir, predictions_from_view(view, pred_field),
                        protocol=protocol or info.get("protocol") or default_protocol(), **kwargs)
