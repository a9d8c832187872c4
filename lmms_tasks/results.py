"""``python -m lmms_tasks.results OUTPUT_PATH TASK PREDICTIONS``: an lmms-eval run of an ``stvg_*`` task
back as a predictions JSONL (for ``stvg evaluate``).

The reader itself is the core's format reader :mod:`stvg_plugin.formats.lmms_stvg_samples` (FiftyOne
and ``stvg demo`` call it there); its names are re-exported here for existing callers.
"""

from __future__ import annotations

from stvg_plugin.formats.lmms_stvg_samples import (
    find_samples,
    newest_samples_to_predictions,
    read_samples,
    samples_to_predictions,
)

__all__ = ["find_samples", "main", "read_samples", "samples_to_predictions"]


def main(argv: list[str] | None = None) -> int:
    """``python -m lmms_tasks.results OUTPUT_PATH TASK PREDICTIONS``: newest samples file -> predictions JSONL."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("output_path", help="the lmms-eval --output_path of the run")
    parser.add_argument("task", help="task name, e.g. stvg_synthetic")
    parser.add_argument("predictions", help="predictions JSONL to write")
    args = parser.parse_args(argv)
    written = newest_samples_to_predictions(args.output_path, args.task, args.predictions)
    if written is None:
        print(f"no *_samples_{args.task}.jsonl under {args.output_path} (was --log_samples given?)")
        return 1
    samples, n = written
    print(f"wrote {n} predictions from {samples} to {args.predictions}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
