"""CPU thread policy: as many threads as the cores this process may use, and OpenMP threads that spin
only briefly before they sleep.

Why: torch's CPU kernels run on an OpenMP team (libgomp in the Linux wheels). By default a libgomp
thread that finishes its share of an operation *spins* for a while waiting for the next one. On a
machine where another CPU-bound process holds a core, the spinning threads take turns with that
process and with each other, and every operation waits for its slowest thread: a 2-thread training
step of the demo's model went from ~1 s to 22-37 s with other jobs running (bench/bench_thread_policy.py;
BENCHMARKS.md). Threads that never spin (``OMP_WAIT_POLICY=PASSIVE``) do not collapse, but on an idle
machine each of the step's thousands of small operations then pays a sleep/wake-up: the 2-thread step
was no faster than one thread. ``GOMP_SPINCOUNT=1000`` (spin ~1000 rounds, a few microseconds, then
sleep) gives back part of the idle machine's speed (the step 1.16x faster than with passive waiting,
median of seven interleaved runs; 0.83-1.25x, the shared host moves it) and still does not collapse:
with one other CPU-bound process a step takes at most ~2x its quiet time (spinning by default:
3.3-5x), with three ~1.16x what passive waiting takes (BENCHMARKS.md, session 9).
libgomp reads these settings once, when it is loaded (i.e. when torch is imported), so
:func:`set_openmp_env` must run before that: the ``stvg`` entry point calls it first thing, and
everything the project starts (demo steps, examples) goes through that entry point. A caller's own
``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` wins (either one means the caller chose how threads wait).

Thread counts come from ``os.sched_getaffinity`` (the cores this process may run on: a container's
or ``taskset``'s limit), not from the machine's core count, which is what torch's default uses.
"""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger(__name__)

#: set before torch loads unless the caller's environment already says how OpenMP threads wait
OPENMP_DEFAULTS = {"GOMP_SPINCOUNT": "1000"}
#: any of these in the caller's environment means the caller chose the wait policy
_WAIT_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no sched_getaffinity (macOS, Windows)
        return max(1, os.cpu_count() or 1)


def set_openmp_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """A short OpenMP spin (:data:`OPENMP_DEFAULTS`) unless the caller set a wait policy, and
    ``OMP_NUM_THREADS`` = :func:`usable_cores` unless set.

    Returns what was set. Must run before torch is imported to take effect in this process (it also
    reaches every child process started with this environment); after that, a debug line says so.
    """
    env = os.environ if environ is None else environ
    wanted = {"OMP_NUM_THREADS": str(usable_cores())}
    if not any(k in env for k in _WAIT_SETTINGS):
        wanted.update(OPENMP_DEFAULTS)
    changed = {k: v for k, v in wanted.items() if k not in env}
    env.update(changed)
    if changed and environ is None and "torch" in sys.modules:
        log.debug("OpenMP settings %s set after torch was imported: they reach child processes only", changed)
    return changed


def set_torch_threads(requested: int | None = None) -> int:
    """``torch.set_num_threads``: ``requested`` (capped at the usable cores), else the usable cores; returns it.

    More threads than cores only makes the threads wait for each other; fewer cores than torch's default
    (the machine's count) is what a container or ``taskset`` gives.
    """
    import torch

    cores = usable_cores()
    n = cores if not requested else int(requested)
    if n > cores:
        log.info("%d torch threads asked for, but this process may use %d cores: using %d", n, cores, cores)
        n = cores
    torch.set_num_threads(n)
    return n
