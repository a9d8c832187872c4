"""Writing predictions into FiftyOne: the plugin's batched write path vs a per-sample ``save()`` loop.

Both sides write the same labels (one query per video, a box on every frame, the span, meta) for
``num_videos x num_frames`` frames, building them with the same code; only the database writes
differ. The plugin path is :func:`fiftyone_plugin.io.write_predictions` (dict-form ``set_values`` per
batch); the baseline sets the fields on each sample and its frames and calls ``sample.save()``.
Runs on a private mongod (or ``FIFTYONE_DATABASE_URI``). Target: >= 5x.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TARGET = 5.0


def _predictions(num_videos: int, num_frames: int, width: int = 640, height: int = 360):
    import numpy as np

    from stvg_plugin.data import GroundingPrediction

    rng = np.random.default_rng(0)
    preds = []
    for v in range(num_videos):
        xy = rng.uniform(0, [width / 2, height / 2], size=(num_frames, 2))
        wh = rng.uniform(10, [width / 2, height / 2], size=(num_frames, 2))
        boxes = {f: [*xy[f], *(xy[f] + wh[f])] for f in range(num_frames)}
        s = int(rng.integers(0, num_frames // 2))
        preds.append(GroundingPrediction(qid=f"q{v}", span_frames=(s, num_frames), boxes=boxes, confidence=0.5,
                                         raw_text="<answer>", span_source="text"))  # fmt: skip
    return preds


def _dataset(fo, name: str, num_videos: int, num_frames: int):
    from fiftyone_plugin.labels import video_metadata

    ds = fo.Dataset(name)
    meta = video_metadata("/nonexistent/v.mp4", 25.0, num_frames, 640, 360)
    ds.add_samples([fo.Sample(filepath=f"/bench/video_{i:05d}.mp4", metadata=meta) for i in range(num_videos)],
                   progress=False)  # fmt: skip
    return ds


def _plugin_write(ds, preds, batch: int = 32) -> None:
    from fiftyone_plugin.io import _declare, write_predictions
    from fiftyone_plugin.labels import PredFields

    pf = PredFields("pred")
    _declare(ds, pf)
    ids, metas = ds.values(["id", "metadata"])
    items = [(sid, m, [p]) for sid, m, p in zip(ids, metas, preds)]
    for i in range(0, len(items), batch):
        write_predictions(ds, pf, items[i : i + batch])


def _save_loop(ds, preds) -> None:
    from fiftyone_plugin.io import _declare
    from fiftyone_plugin.labels import PredFields, prediction_labels

    pf = PredFields("pred")
    _declare(ds, pf)
    for sample, p in zip(ds.iter_samples(), preds):
        m = sample.metadata
        values, frames = prediction_labels([p], m.frame_width, m.frame_height, m.frame_rate, m.total_frame_count,
                                           label=pf.base)
        for k in ("spans", "confidence", "error", "meta"):  # the fields write_predictions writes
            sample[getattr(pf, k)] = values[k]
        for fn, dets in frames.items():
            sample.frames[fn][pf.frames] = dets
        sample.save()


def _same(a, b) -> bool:
    from fiftyone_plugin.labels import predictions_from_view

    pa = sorted((p.to_json() for p in predictions_from_view(a, "pred")), key=lambda d: d["qid"])
    pb = sorted((p.to_json() for p in predictions_from_view(b, "pred")), key=lambda d: d["qid"])
    return pa == pb


def run(quick: bool = False) -> list[dict]:
    num_videos, num_frames = (20, 30) if quick else (200, 150)
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    proc = None
    tmp = tempfile.TemporaryDirectory(prefix="bench_fo_")
    if not os.environ.get("FIFTYONE_DATABASE_URI"):
        from fiftyone_plugin.db import start_mongod

        uri, proc = start_mongod(Path(tmp.name) / "db")
        os.environ["FIFTYONE_DATABASE_URI"] = uri
    try:
        import fiftyone as fo

        fo.config.show_progress_bars = False
        preds = _predictions(num_videos, num_frames)
        timings = {}
        datasets = {}
        for name, fn in (("save_loop", _save_loop), ("plugin", _plugin_write)):
            ds = _dataset(fo, f"bench_{name}_{os.getpid()}", num_videos, num_frames)
            t0 = time.perf_counter()
            fn(ds, preds)
            timings[name] = time.perf_counter() - t0
            datasets[name] = ds
        identical = _same(datasets["plugin"], datasets["save_loop"])
        for ds in datasets.values():
            ds.delete()
    finally:
        if proc is not None:
            from fiftyone_plugin.db import stop_mongod

            stop_mongod(proc)
            os.environ.pop("FIFTYONE_DATABASE_URI", None)
        tmp.cleanup()
    ratio = timings["save_loop"] / timings["plugin"]
    return [
        {
            "name": f"fiftyone_write_{num_videos}x{num_frames}",
            "ratio": round(ratio, 2),
            "target": TARGET,
            "met": bool(ratio >= TARGET and identical),
            "details": {
                "save_loop_s": round(timings["save_loop"], 3),
                "plugin_s": round(timings["plugin"], 3),
                "frame_labels": num_videos * num_frames,
                "identical_predictions": identical,
            },
        }
    ]


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(row)
