"""Rendering and the HTML report (stvg_plugin.viz): real MP4/GIF output, real plots; no FiftyOne, no database."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from stvg_plugin.data import GroundingPrediction, read_queries
from stvg_plugin.video import probe_video, sample_video
from stvg_plugin.viz.render import GT_COLOR, PRED_COLOR, render_query
from stvg_plugin.viz.report import write_report


@pytest.fixture(scope="module")
def q_and_pred(synth_dir):
    q = read_queries(synth_dir / "annotations.jsonl")[0]
    # a prediction shifted 4 frames later and 6 px right: both tubes visible on the overlap
    boxes = {f + 4: [b[0] + 6, b[1], b[2] + 6, b[3]] for f, b in q.boxes.items() if f + 4 < q.num_frames}
    pred = GroundingPrediction(qid=q.qid, span_frames=(q.span_frames[0] + 4, min(q.span_frames[1] + 4, q.num_frames)),
                               boxes=boxes)  # fmt: skip
    return q, pred


def _near(img: np.ndarray, color, tol: int = 60) -> np.ndarray:
    return (np.abs(img.astype(int) - np.array(color)).sum(axis=-1) < tol)


def test_render_mp4_draws_both_tubes_and_the_timeline(q_and_pred, tmp_path):
    q, pred = q_and_pred
    out = render_query(q.video, q, pred, tmp_path / "q.mp4")
    info = probe_video(out)
    assert info.num_frames == q.num_frames and info.width == q.width
    assert info.height == q.height + 12  # the span bar under the frame
    mid = (pred.span_frames[0] + q.span_frames[1]) // 2  # in both spans
    frame = sample_video(str(out), num_frames=None).frames[mid]
    x1, y1, x2, y2 = (int(round(v)) for v in q.boxes[mid])
    assert _near(frame[y1 + 1 : y2 - 1, max(x1 - 1, 0) : x1 + 2], GT_COLOR).mean() > 0.3  # left edge of GT box
    px1 = int(round(pred.boxes[mid][0]))
    assert _near(frame[y1 + 1 : y2 - 1, px1 - 1 : px1 + 2], PRED_COLOR).mean() > 0.3
    bar = frame[q.height :]
    assert _near(bar[2:5], GT_COLOR).any() and _near(bar[8:10], PRED_COLOR).any()


def test_render_gif_and_bad_suffix(q_and_pred, tmp_path):
    q, pred = q_and_pred
    out = render_query(q.video, q, None, tmp_path / "q.gif", max_frames=10)
    with Image.open(out) as im:
        assert im.n_frames == 10
    with pytest.raises(ValueError, match="must end with"):
        render_query(q.video, q, pred, tmp_path / "q.avi")


def test_report_writes_plots_and_html(synth_dir, tmp_path):
    queries = read_queries(synth_dir / "annotations.jsonl")
    preds = [GroundingPrediction(qid=q.qid, span_frames=q.span_frames, boxes=dict(q.boxes)) for q in queries[1:]]
    paths = write_report(queries, tmp_path / "rep", preds, worst_k=3, render_worst=1)
    for name in ("viou_hist", "tiou_vs_viou", "worst_timeline"):
        with Image.open(paths[name]) as im:
            assert np.asarray(im.convert("L")).std() > 5, name  # not a blank canvas
    page = paths["index"].read_text()
    assert queries[0].qid in page  # the unanswered query is the worst
    assert f"render:{queries[0].qid}" in paths and "renders/" in page
    assert '"num_missing": 1' in paths["summary"].read_text()


def test_render_and_report_do_not_import_fiftyone():
    code = "import sys, stvg_plugin.viz.render, stvg_plugin.viz.report, fiftyone_plugin.report, fiftyone_plugin.db; print('fiftyone' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
