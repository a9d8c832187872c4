"""Run every benchmark side by side and print one table of ratios against their targets.

Usage: ``make bench`` (full sizes) or ``python bench/run_all.py --quick`` (smoke sizes).
Each ``bench/bench_*.py`` exposes ``run(quick: bool) -> list[dict]`` rows with ``name``,
``ratio``, ``target``, ``met`` and ``details``. Results also go to ``outputs/bench/results.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ["bench_metrics", "bench_video", "bench_ground", "bench_fiftyone", "bench_model"]


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_all(quick: bool = False, only: list[str] | None = None) -> list[dict]:
    rows: list[dict] = []
    for name in ORDER:
        if only and name not in only:
            continue
        if not (HERE / f"{name}.py").exists():
            continue
        t0 = time.perf_counter()
        try:
            for row in load(name).run(quick=quick):
                rows.append({"bench": name, **row})
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            rows.append({"bench": name, "name": "(failed)", "ratio": None, "target": None, "met": False,
                         "details": f"{type(exc).__name__}: {exc}"})
        print(f"[{name}] {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    return rows


def format_table(rows: list[dict]) -> str:
    lines = [f"{'benchmark':<16} {'measure':<48} {'ratio':>9} {'target':>8}  met", "-" * 90]
    for r in rows:
        ratio = "-" if r.get("ratio") is None else f"{r['ratio']:.2f}"
        target = "-" if r.get("target") is None else f"{r['target']:g}"
        met = "yes" if r.get("met") else "NO"
        lines.append(f"{r['bench']:<16} {str(r['name'])[:48]:<48} {ratio:>9} {target:>8}  {met}")
        if r.get("details"):
            lines.append(f"{'':<16}   {r['details']}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke sizes (seconds, not minutes)")
    parser.add_argument("--only", nargs="*", help="bench module names, e.g. bench_metrics")
    args = parser.parse_args()
    rows = run_all(quick=args.quick, only=args.only)
    print(format_table(rows))
    out = Path("outputs/bench/results.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.platform(), "quick": args.quick}
    from stvg_plugin.data import atomic_write_text

    atomic_write_text(out, json.dumps({"meta": meta, "rows": rows}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
