"""Training step time quiet vs with one other CPU-bound process, under the old and the new thread policy.

One worker process per policy trains the demo's model (``conf/model/spacevllm_tiny_learn.yaml``, the
demo's batched step of 8 examples) step by step on command; the parent alternates quiet and loaded
phases (a few steps each, several rounds) so the two are measured side by side in one warm process.
The load is another process running a CPU-bound torch loop (matrix products with torch's default
threads and OpenMP settings, as a second job of any kind would). Policies:

* ``old``: 2 torch threads (the demo's ``trainer.num_threads=2``), OpenMP's default (spinning) wait;
* ``new``: what ``stvg`` now does (``stvg_plugin/util/threads.py``): ``OMP_WAIT_POLICY=PASSIVE``
  set before torch loads, threads = the cores this process may use (``os.sched_getaffinity``).

Target (issue 19.2): with the new policy a loaded step takes at most 2.5x its quiet time. A phase stops
after ``--steps`` steps or ``--phase-cap`` seconds (at least one step), so a collapsing policy cannot
stretch the run: the whole bench takes about 2-3 minutes.

    python bench/bench_thread_policy.py [--rounds 2] [--steps 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
LOAD = ("import torch\nx = torch.randn(1024, 1024)\nwhile True:\n    y = x @ x\n")


def worker(policy: str) -> int:
    """Build the demo trainer under ``policy``, then run one step per ``step`` line on stdin."""
    if policy == "new":
        sys.path.insert(0, str(HERE.parent))
        from stvg_plugin.util.threads import set_openmp_env

        set_openmp_env()  # before torch loads, as the stvg entry point does
    import tempfile

    import torch

    sys.path.insert(0, str(HERE))
    from bench_train_step import tiny_trainers

    threads = 2 if policy == "old" else None  # None: the trainer's default, the usable cores
    with tempfile.TemporaryDirectory() as tmp:
        trainer = tiny_trainers(Path(tmp), threads, 8, names=("batched",), num_videos=8)["batched"]
        n = torch.get_num_threads()
        trainer.train_step()  # warm-up
        print(json.dumps({"ready": True, "threads": n, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}),
              flush=True)
        for line in sys.stdin:
            if line.strip() != "step":
                break
            t0 = time.perf_counter()
            trainer.train_step()
            print(json.dumps({"step_s": time.perf_counter() - t0}), flush=True)
    return 0


def _start_worker(policy: str) -> tuple[subprocess.Popen, dict]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker", policy], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)
    info = json.loads(proc.stdout.readline())
    return proc, info


def _phase(proc: subprocess.Popen, steps: int, cap_s: float) -> list[float]:
    times: list[float] = []
    t0 = time.perf_counter()
    while len(times) < steps and (not times or time.perf_counter() - t0 < cap_s):
        proc.stdin.write("step\n")
        proc.stdin.flush()
        times.append(json.loads(proc.stdout.readline())["step_s"])
    return times


def measure(policy: str, rounds: int, steps: int, cap_s: float) -> dict:
    proc, info = _start_worker(policy)
    quiet: list[float] = []
    loaded: list[float] = []
    try:
        for _ in range(rounds):
            quiet += _phase(proc, steps, cap_s)
            env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
            load = subprocess.Popen([sys.executable, "-c", LOAD], env=env)
            try:
                time.sleep(1.0)  # the load is running (torch imported) before the phase starts
                loaded += _phase(proc, steps, cap_s)
            finally:
                load.kill()
                load.wait()
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
    q, ld = statistics.median(quiet), statistics.median(loaded)
    return {"policy": policy, **info, "quiet_s": q, "loaded_s": ld, "ratio": ld / q, "quiet_steps": len(quiet),
            "loaded_steps": len(loaded)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", choices=("old", "new"), help=argparse.SUPPRESS)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3, help="steps per phase")
    ap.add_argument("--phase-cap", type=float, default=12.0, help="seconds after which a phase stops")
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args.worker)
    load_avg = os.getloadavg()
    rows = [measure(p, args.rounds, args.steps, args.phase_cap) for p in ("new", "old")]
    print(f"training step (demo model, batch 8), quiet vs one CPU-bound torch process; cores usable: "
          f"{len(os.sched_getaffinity(0))}; load average at start: {load_avg[0]:.1f}")
    print(f"{'policy':<6} {'threads':>7} {'OMP_WAIT_POLICY':>16} {'quiet s':>8} {'loaded s':>9} {'ratio':>6}  target <= 2.5")
    for r in rows:
        print(f"{r['policy']:<6} {r['threads']:>7} {str(r['omp_wait_policy']):>16} {r['quiet_s']:>8.3f} "
              f"{r['loaded_s']:>9.3f} {r['ratio']:>6.2f}  ({r['quiet_steps']} / {r['loaded_steps']} steps)")
    for r in rows:
        print(json.dumps({"name": f"thread_policy_{r['policy']}", **r}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
