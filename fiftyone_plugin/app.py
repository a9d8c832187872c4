"""How the App draws a dataset of this plugin: ground truth and each prediction run in clearly different colours.

Why: every label reads its run's name, but FiftyOne's default palette can give GT and a prediction
neighbouring shades (orange on dark orange in the modal). The dataset's ``app_config.color_scheme``
colours by field: GT green, the runs from a fixed palette of contrasting colours, in the order they
were first written, so a colour stays with its run across sessions.
"""

from __future__ import annotations

import fiftyone as fo

INFO_KEY = "stvg"  # the plugin's entry of dataset.info (see io.INFO_KEY)
GT_COLOR = "#2ca02c"  # green
RUN_COLORS = ("#d62728", "#1f77b4", "#ff7f0e", "#9467bd", "#e377c2", "#17becf", "#8c564b", "#bcbd22")


def _field_colors(gt_prefixes: list[str], runs: list[str]) -> list[dict]:
    fields = []
    for gt in gt_prefixes:
        fields += [{"path": p, "fieldColor": GT_COLOR} for p in (f"frames.{gt}", f"{gt}_spans", f"{gt}_span")]
    for i, run in enumerate(runs):
        color = RUN_COLORS[i % len(RUN_COLORS)]
        fields += [{"path": p, "fieldColor": color} for p in (f"frames.{run}", f"{run}_spans", f"{run}_span")]
    return fields


def apply_colors(dataset: fo.Dataset, gt_prefixes: list[str], run: str | None = None) -> list[str]:
    """Colour GT fields and every prediction run known to the dataset (plus ``run``); returns the runs in colour order."""
    scheme = dataset.app_config.color_scheme
    info = dict(dataset.info.get(INFO_KEY) or {})
    known = list(info.get("run_colors") or [])
    if run is not None and run not in known:
        known.append(run)
    others = [f for f in (scheme.fields or []) if not any(
        f.get("path") in (f"frames.{b}", f"{b}_spans", f"{b}_span") for b in (*gt_prefixes, *known))] if scheme else []
    dataset.app_config.color_scheme = fo.ColorScheme(
        color_by="field", fields=[*_field_colors(gt_prefixes, known), *others],
    )
    info["run_colors"] = known
    dataset.info[INFO_KEY] = info
    dataset.save()
    return known
