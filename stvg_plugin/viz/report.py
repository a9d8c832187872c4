"""Plots and a small HTML page for a scored run: the look at results for machines without the App.

:func:`write_report` takes queries + predictions (or a FiftyOne dataset/view with a prediction run)
and writes ``viou_hist.png``, ``tiou_vs_viou.png``, ``worst_timeline.png`` and ``index.html``.
Numbers come from :func:`stvg_plugin.metrics.evaluate` (or the ``per_query`` rows you pass); fiftyone
is imported only when a dataset is given.
"""

from __future__ import annotations

import html
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stvg_plugin.data import GroundingPrediction, GroundingQuery, atomic_path, atomic_write_text
from stvg_plugin.viz.render import prediction_span, render_query

_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def _inside(root: Path, name: str) -> Path:
    """``root/name`` with ``name`` made a plain file name; refuses anything resolving outside ``root``."""
    safe = _SAFE.sub("_", name).strip("._") or "item"
    path = (root / safe).resolve()
    if path.parent != root.resolve():
        raise ValueError(f"output {name!r} would leave {root}")
    return path


def _save_figure(fig: Any, path: Path, **kwargs: Any) -> None:
    """``fig.savefig`` through :func:`atomic_path`: never a half-written image."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or None, **kwargs)


def _plots(out: Path, rows: list[dict], worst: list[dict], queries: dict, preds: dict) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths: dict[str, Path] = {}
    viou = [r["vIoU"] for r in rows if r.get("vIoU") is not None]
    tiou_viou = [(r["tIoU"], r["vIoU"]) for r in rows if r.get("tIoU") is not None and r.get("vIoU") is not None]

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(viou, bins=20, range=(0, 1), color="#4a7bd0", edgecolor="white")
    ax.set(xlabel="vIoU", ylabel="queries", title=f"vIoU over {len(viou)} queries")
    paths["viou_hist"] = out / "viou_hist.png"
    fig.tight_layout()
    _save_figure(fig, paths["viou_hist"], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 5))
    if tiou_viou:
        ax.scatter(*zip(*tiou_viou), s=14, alpha=0.7, color="#d04a4a")
    ax.plot([0, 1], [0, 1], ls="--", lw=0.8, color="gray")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="tIoU", ylabel="vIoU", title="tIoU vs vIoU (vIoU <= tIoU)")
    paths["tiou_vs_viou"] = out / "tiou_vs_viou.png"
    fig.tight_layout()
    _save_figure(fig, paths["tiou_vs_viou"], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 0.45 * max(len(worst), 1) + 1.2))
    for i, r in enumerate(worst):
        q, p = queries[r["qid"]], preds.get(r["qid"])
        n = max(q.num_frames, 1)
        if q.span_frames is not None:
            ax.barh(i + 0.18, (q.span_frames[1] - q.span_frames[0]) / n, left=q.span_frames[0] / n, height=0.34,
                    color="#28b43c", label="GT" if i == 0 else None)  # fmt: skip
        ps = prediction_span(p, q.fps, q.num_frames)
        if ps is not None:
            ax.barh(i - 0.18, (ps[1] - ps[0]) / n, left=ps[0] / n, height=0.34, color="#eb2828",
                    label="predicted" if i == 0 else None)  # fmt: skip
    ax.set_yticks(range(len(worst)), [f"{r['qid']} (vIoU {r.get('vIoU') or 0:.2f})" for r in worst], fontsize=7)
    ax.set(xlim=(0, 1), xlabel="fraction of the video", title=f"{len(worst)} worst queries: GT vs predicted span")
    ax.invert_yaxis()
    if worst:
        ax.legend(loc="lower right", fontsize=7)
    paths["worst_timeline"] = out / "worst_timeline.png"
    fig.tight_layout()
    _save_figure(fig, paths["worst_timeline"], dpi=100)
    plt.close(fig)
    return paths


def write_report(
    queries: Sequence[GroundingQuery],
    out_dir: str | os.PathLike,
    predictions: Sequence[GroundingPrediction],
    per_query: Sequence[dict] | None = None,
    *,
    protocol: str | None = None,
    worst_k: int = 15,
    render_worst: int = 0,
    title: str = "STVG grounding report",
) -> dict[str, Path]:
    """Write the report into ``out_dir``; returns ``{name: path}`` (``index`` is the HTML page).

    ``per_query``: rows with ``qid``, ``tIoU``, ``vIoU`` (as from ``stvg evaluate``'s
    per_query.jsonl); computed with ``evaluate`` (``protocol``, default: ``metrics.default_protocol()``) when omitted.
    ``render_worst``: also render that many worst queries to GIFs under ``out_dir/renders``.
    """
    from stvg_plugin.metrics import default_protocol, evaluate

    queries = list(queries)
    preds_list = list(predictions)
    protocol = protocol or default_protocol()
    summary: dict[str, Any] = {}
    if per_query is None:
        res = evaluate(queries, preds_list, protocol=protocol)
        per_query, summary = res.per_query, res.summary
    rows = [dict(r) for r in per_query]
    by_qid = {q.qid: q for q in queries}
    preds = {p.qid: p for p in preds_list}
    scored = [r for r in rows if r.get("qid") in by_qid]
    worst = sorted(scored, key=lambda r: (r.get("vIoU") if r.get("vIoU") is not None else -1.0, r["qid"]))[:worst_k]

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = _plots(out, scored, worst, by_qid, preds)
    renders: dict[str, Path] = {}
    if render_worst > 0:
        (out / "renders").mkdir(exist_ok=True)
        for r in worst[:render_worst]:
            q = by_qid[r["qid"]]
            target = _inside(out / "renders", f"{r['qid']}.gif")
            try:
                renders[r["qid"]] = render_query(q.video, q, preds.get(q.qid), target, max_frames=120)
            except Exception as exc:  # a bad video must not sink the report; the page says why
                renders[r["qid"]] = Path(f"error: {exc}")

    def cell(v: Any) -> str:
        return f"{v:.4f}" if isinstance(v, float) else html.escape(str(v))

    lines = [f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px;text-align:left}"
             "img{max-width:48%;margin:4px}</style>", f"<h1>{html.escape(title)}</h1>",
             f"<p>{len(scored)} queries, protocol <code>{html.escape(str(protocol))}</code></p>"]  # fmt: skip
    if summary:
        keys = [k for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        lines.append("<h2>Summary</h2><table>" + "".join(f"<tr><th>{html.escape(k)}</th><td>{cell(summary[k])}</td></tr>"
                                                           for k in keys) + "</table>")  # fmt: skip
    lines.append("<h2>Plots</h2>" + "".join(f"<img src='{p.name}' alt='{n}'>" for n, p in paths.items()))
    lines.append("<h2>Worst queries</h2><table><tr><th>qid</th><th>query</th><th>tIoU</th><th>vIoU</th><th>render</th></tr>")
    for r in worst:
        q = by_qid[r["qid"]]
        rp = renders.get(r["qid"])
        link = "" if rp is None else (html.escape(str(rp)) if not rp.exists() else f"<a href='renders/{rp.name}'>gif</a>")
        lines.append(f"<tr><td>{cell(r['qid'])}</td><td>{cell(q.query)}</td><td>{cell(r.get('tIoU'))}</td>"
                     f"<td>{cell(r.get('vIoU'))}</td><td>{link}</td></tr>")  # fmt: skip
    lines.append("</table>")
    paths["index"] = out / "index.html"
    atomic_write_text(paths["index"], "\n".join(lines) + "\n")
    if summary:
        paths["summary"] = out / "summary.json"
        atomic_write_text(paths["summary"], json.dumps(summary, indent=2, default=str) + "\n")
    for qid, rp in renders.items():
        if rp.exists():
            paths[f"render:{qid}"] = rp
    return paths
