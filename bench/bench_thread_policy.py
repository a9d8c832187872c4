"""Training step time quiet vs with other CPU-bound processes, under several OpenMP thread policies.

One warm worker process per policy trains the demo's model (``conf/model/spacevllm_tiny_learn.yaml``,
the demo's batched step of 8 examples) step by step on command. The parent alternates quiet and loaded
phases (several rounds); within a phase the workers take one step each in turn, so every policy meets
the same moments of the shared machine (whose speed drifts by ~1.5x within minutes; one policy after
another in separate runs confounded the two). The load is ``--loads`` processes each running a
CPU-bound torch loop (matrix products with torch's default threads and OpenMP settings, as a second job
of any kind would). Policies (``--policies``, comma-separated):

* ``new``: what ``stvg`` does (``stvg_plugin/util/threads.py``): ``GOMP_SPINCOUNT=30000`` set before
  torch loads, threads = the cores this process may use (``os.sched_getaffinity``), each step measured by
  the trainer's ``ThreadGovernor`` (fewer threads while other processes use the cores; it decides every
  second of steps, so give phases ``--steps 10`` or more to see it settle);
* ``spin1000``: session 9's policy (``GOMP_SPINCOUNT=1000``, usable cores, no governor);
* ``passive``: the policy before session 9: ``OMP_WAIT_POLICY=PASSIVE``, threads = usable cores;
* ``old``: 2 torch threads (the demo's ``trainer.num_threads=2``), OpenMP's default (spinning) wait;
* ``spinN``: ``GOMP_SPINCOUNT=N``, threads = usable cores (to choose N).

Target (issue 19.2): with the new policy a loaded step (one load) takes at most 2.5x its quiet time.
The table also gives each policy's thread count at its last quiet and loaded step. A
policy stops stepping in a phase once its steps there pass ``--phase-cap`` seconds (at least one step),
so a collapsing policy cannot stretch the run: the default bench takes about 2 minutes.

    python bench/bench_thread_policy.py [--rounds 3] [--steps 3] [--policies new,passive,old] [--loads 1]
"""

from __future__ import annotations

import argparse
import contextlib
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
    if policy.startswith("spin"):  # libgomp spins this many times before it sleeps
        os.environ["GOMP_SPINCOUNT"] = policy[4:]
    elif policy == "passive":
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    if policy != "old":
        os.environ["OMP_NUM_THREADS"] = str(len(os.sched_getaffinity(0)))
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
        wait = os.environ.get("OMP_WAIT_POLICY") or (f"spin {os.environ['GOMP_SPINCOUNT']}"
                                                      if "GOMP_SPINCOUNT" in os.environ else "default")
        print(json.dumps({"ready": True, "threads": n, "wait": wait}), flush=True)
        governed = trainer.governor.measure if policy == "new" else contextlib.nullcontext
        for line in sys.stdin:
            if line.strip() != "step":
                break
            t0 = time.perf_counter()
            with governed():
                trainer.train_step()
            print(json.dumps({"step_s": time.perf_counter() - t0, "threads": torch.get_num_threads()}), flush=True)
    return 0


def _start_worker(policy: str) -> tuple[subprocess.Popen, dict]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker", policy], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)
    info = json.loads(proc.stdout.readline())
    return proc, info


def _step(proc: subprocess.Popen) -> dict:
    """One step of a worker: ``{"step_s", "threads"}`` (its torch threads after the step)."""
    time.sleep(0.2)  # the previous worker's spinning OpenMP threads (if any) have gone to sleep
    proc.stdin.write("step\n")
    proc.stdin.flush()
    return json.loads(proc.stdout.readline())


def _phase(procs: dict[str, subprocess.Popen], times: dict[str, list[float]], threads: dict[str, int], steps: int,
           cap_s: float) -> None:
    """``steps`` steps of every policy, one each in turn (a phase of the machine hits them alike); a
    policy whose steps pass ``cap_s`` seconds in this phase sits out its remaining turns."""
    spent = dict.fromkeys(procs, 0.0)
    for k in range(steps):
        for policy, proc in procs.items():
            if k == 0 or spent[policy] < cap_s:
                done = _step(proc)
                spent[policy] += done["step_s"]
                times[policy].append(done["step_s"])
                threads[policy] = done["threads"]


def measure(policies: list[str], rounds: int, steps: int, cap_s: float, loads: int = 1) -> list[dict]:
    """Quiet and loaded phases in turn, every policy's worker stepping within each phase."""
    started = {p: _start_worker(p) for p in policies}
    procs = {p: proc for p, (proc, _) in started.items()}
    quiet: dict[str, list[float]] = {p: [] for p in policies}
    loaded: dict[str, list[float]] = {p: [] for p in policies}
    quiet_threads: dict[str, int] = {}
    loaded_threads: dict[str, int] = {}
    try:
        for _ in range(rounds):
            _phase(procs, quiet, quiet_threads, steps, cap_s)
            env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")}
            jobs = [subprocess.Popen([sys.executable, "-c", LOAD], env=env) for _ in range(loads)]
            try:
                time.sleep(1.0)  # the load is running (torch imported) before the phase starts
                _phase(procs, loaded, loaded_threads, steps, cap_s)
            finally:
                for job in jobs:
                    job.kill()
                    job.wait()
    finally:
        for proc in procs.values():
            proc.stdin.close()
            proc.wait(timeout=60)
    rows = []
    for p in policies:
        q, ld = statistics.median(quiet[p]), statistics.median(loaded[p])
        rows.append({"policy": p, **started[p][1], "quiet_s": q, "loaded_s": ld, "ratio": ld / q,
                     "quiet_steps": len(quiet[p]), "loaded_steps": len(loaded[p]),
                     "quiet_threads_last": quiet_threads[p], "loaded_threads_last": loaded_threads[p]})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--policies", default="new,passive,old")
    ap.add_argument("--loads", type=int, default=1, help="CPU-bound processes in a loaded phase")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3, help="steps per phase")
    ap.add_argument("--phase-cap", type=float, default=12.0, help="seconds after which a phase stops")
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args.worker)
    load_avg = os.getloadavg()
    policies = args.policies.split(",")
    bad = [p for p in policies if p not in ("new", "passive", "old") and not (p.startswith("spin") and p[4:].isdigit())]
    if bad:
        ap.error(f"unknown policies {bad}: use new, passive, old or spinN")
    rows = measure(policies, args.rounds, args.steps, args.phase_cap, args.loads)
    print(f"training step (demo model, batch 8), quiet vs {args.loads} CPU-bound torch process(es); cores usable: "
          f"{len(os.sched_getaffinity(0))}; load average at start: {load_avg[0]:.1f}")
    print(f"{'policy':<10} {'threads':>7} {'wait':>10} {'quiet s':>8} {'loaded s':>9} {'ratio':>6}  target <= 2.5")
    for r in rows:
        print(f"{r['policy']:<10} {r['threads']:>7} {r['wait']:>10} {r['quiet_s']:>8.3f} "
              f"{r['loaded_s']:>9.3f} {r['ratio']:>6.2f}  ({r['quiet_steps']} / {r['loaded_steps']} steps; threads at "
              f"the last quiet / loaded step {r['quiet_threads_last']} / {r['loaded_threads_last']})")
    for r in rows:
        print(json.dumps({"name": f"thread_policy_{r['policy']}", **r}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
