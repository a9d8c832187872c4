"""The FiftyOne step of ``stvg demo`` (and the line that opens the App on its dataset).

``python -m fiftyone_plugin.demo --dataset stvg-demo --annotations A --predictions P [--chance C]
[--lmms-output DIR]`` imports the held-out set with GT into a persistent dataset (replacing an older
one, so re-runs never duplicate), attaches the model's run (from the lmms-eval samples when given,
else the predictions JSONL) and the chance baseline, evaluates both with the core metric engine and
writes a per-sample ``delta_vIoU`` between them. ``--launch`` opens the App on the dataset.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

MODEL_RUN, CHANCE_RUN = "spacevllm", "chance"


def build(dataset: str, annotations: str, predictions: str, chance: str | None, lmms_output: str | None) -> dict:
    from stvg_plugin.data import read_predictions

    from .db import ensure_database
    from .io import attach_predictions, import_benchmark, import_lmms_eval_results

    ensure_database()
    ds, imported = import_benchmark("unified", annotations, dataset, overwrite=True, persistent=True)
    samples = None
    if lmms_output:
        from stvg_plugin.formats.lmms_stvg_samples import find_samples

        found = find_samples(lmms_output, "stvg_synthetic")
        samples = found[-1] if found else None
    if samples is not None:
        model = import_lmms_eval_results(ds, samples, MODEL_RUN)
    else:
        model = attach_predictions(ds, read_predictions(predictions), MODEL_RUN)
    result = {"imported": imported, MODEL_RUN: model}
    if chance:
        result[CHANCE_RUN] = attach_predictions(ds, read_predictions(chance), CHANCE_RUN)
        from .io import compare_runs

        result["deltas"] = compare_runs(ds, MODEL_RUN, CHANCE_RUN)
    return result


def launch(dataset: str, port: int = 5151) -> None:
    import fiftyone as fo

    session = fo.launch_app(fo.load_dataset(dataset), address="127.0.0.1", port=port, remote=True)
    print(f"the App serves {dataset} on http://127.0.0.1:{port}/ (Ctrl-C to stop)")
    session.wait()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="stvg-demo")
    ap.add_argument("--annotations")
    ap.add_argument("--predictions")
    ap.add_argument("--chance")
    ap.add_argument("--lmms-output")
    ap.add_argument("--launch", action="store_true", help="open the App on --dataset (built by an earlier run)")
    ap.add_argument("--port", type=int, default=5151)
    args = ap.parse_args(argv)
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    if args.launch:
        launch(args.dataset, args.port)
        return 0
    if not (args.annotations and args.predictions):
        ap.error("--annotations and --predictions are required (or --launch)")
    for flag in ("annotations", "predictions", "chance"):
        path = getattr(args, flag)
        if path and not Path(path).is_file():
            ap.error(f"--{flag} {path} does not exist")
    result = build(args.dataset, args.annotations, args.predictions, args.chance, args.lmms_output)
    summary = result[MODEL_RUN].get("evaluation", {}).get("summary", {})
    shown = {k: summary[k] for k in ("m_tIoU", "m_vIoU", "vIoU@0.3", "vIoU@0.5", "num_queries") if k in summary}
    print(json.dumps({"dataset": args.dataset, MODEL_RUN: shown}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
