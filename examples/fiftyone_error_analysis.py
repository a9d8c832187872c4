"""Error analysis in FiftyOne: where and why does a grounding model miss? Compare two runs.

Needs: the FiftyOne dataset written by ``make demo`` (``stvg-demo``: held-out synthetic videos with
GT, the trained model's run ``spacevllm`` and the chance run ``chance``, both evaluated), or any
dataset with two evaluated runs (``--run-a`` / ``--run-b``).

    .venv/bin/python examples/fiftyone_error_analysis.py [--dataset stvg-demo] [--launch]

Prints the failure categories, the temporal misses (right object, wrong time), the queries where
run A beats run B the most, and saves those views on the dataset so the App lists them.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="stvg-demo")
    ap.add_argument("--run-a", default="spacevllm")
    ap.add_argument("--run-b", default="chance")
    ap.add_argument("--launch", action="store_true", help="open the App on the temporal-miss view")
    args = ap.parse_args()
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    import fiftyone as fo
    from fiftyone import ViewField as F

    from fiftyone_plugin.io import compare_runs, query_view

    if args.dataset not in fo.list_datasets():
        print(f"fiftyone_error_analysis: no dataset {args.dataset!r}; run `make demo` first "
              f"(datasets here: {fo.list_datasets()})", file=sys.stderr)
        return 2
    ds = fo.load_dataset(args.dataset)
    for run in (args.run_a, args.run_b):
        if not ds.has_sample_field(f"{run}_tIoU"):
            print(f"fiftyone_error_analysis: run {run!r} is not evaluated on {args.dataset} "
                  "(use the evaluate_grounding operator)", file=sys.stderr)
            return 2

    clips = query_view(ds)  # one clip per query: per-query numbers are attributes of the GT span
    cat = f"gt_spans.{args.run_a}_category"
    print(f"{args.run_a}: failure categories over {len(clips)} queries:",
          dict(Counter(clips.values(f"{cat}"))))

    temporal_misses = clips.match(F(f"{cat}") == "temporal_miss").sort_by(f"gt_spans.{args.run_a}_tIoU")
    print(f"{len(temporal_misses)} temporal misses (box right where the spans overlap, span wrong)")
    ds.save_view(f"{args.run_a}_temporal_misses", temporal_misses, overwrite=True)

    deltas = compare_runs(ds, args.run_a, args.run_b)
    delta = f"delta_vIoU_{args.run_a}_{args.run_b}"
    best = ds.sort_by(delta, reverse=True).limit(5)
    print(f"mean {delta} over samples: {deltas[delta]:+.3f}")
    for sample in best:
        print(f"  {os.path.basename(sample.filepath)}: {delta} = {sample[delta]:+.3f}")
    ds.save_view(f"{args.run_a}_beats_{args.run_b}", ds.sort_by(delta, reverse=True), overwrite=True)
    print(f"saved views on {args.dataset}: {ds.list_saved_views()}")
    if args.launch:
        session = fo.launch_app(ds, view=temporal_misses, address="127.0.0.1", remote=True)
        session.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
