"""CPU thread policy: as many threads as the cores this process may use, OpenMP threads that spin a
while before they sleep, and fewer threads while other processes use those cores.

Why: torch's CPU kernels run on an OpenMP team (libgomp in the Linux wheels). A libgomp thread that
finishes its share of an operation *spins* for a while waiting for the next one, and every operation
waits for the team's slowest thread. On a machine where another CPU-bound process holds a core, the
spinning threads take turns with that process and with each other: a 2-thread training step of the
demo's model went from ~1 s to 22-37 s with other jobs running (bench/bench_thread_policy.py;
BENCHMARKS.md). Threads that never spin (``OMP_WAIT_POLICY=PASSIVE``) do not collapse, but on an idle
machine each of the step's thousands of small operations then pays a sleep/wake-up: the 2-thread step
was no faster than one thread. Session 9 settled on a short spin (``GOMP_SPINCOUNT=1000``); session 10
measured what it costs on the idle machine: the demo's step 0.211 s against 0.167 s with 30000 spins
(libgomp's default, 300000, 0.169 s), and with one other CPU-bound process 30000 was no slower than 1000
(0.360 / 0.362 s), with three 2-3x slower (BENCHMARKS.md, session 10). So ``stvg`` sets
``GOMP_SPINCOUNT=30000`` and the trainer's :class:`ThreadGovernor` drops to the cores the other
processes leave (one thread has no team to wait for) and comes back when they leave.
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
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

#: set before torch loads unless the caller's environment already says how OpenMP threads wait
OPENMP_DEFAULTS = {"GOMP_SPINCOUNT": "30000"}
#: any of these in the caller's environment means the caller chose the wait policy
_WAIT_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    return max(1, len(_affinity()))


def set_openmp_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """OpenMP's spin before sleeping (:data:`OPENMP_DEFAULTS`) unless the caller set a wait policy, and
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


def busy_seconds(cpus: set[int], stat: Path = Path("/proc/stat")) -> float | None:
    """Seconds the ``cpus`` have spent busy since boot, every process together (Linux ``/proc/stat``: user,
    nice, system, irq, softirq and steal time of each ``cpuN`` line); ``None`` where it cannot be read."""
    try:
        lines = stat.read_text().splitlines()
        tick = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError):
        return None
    busy, found = 0, 0
    for line in lines:
        name, _, rest = line.partition(" ")
        if not (name.startswith("cpu") and name[3:].isdigit()) or int(name[3:]) not in cpus:
            continue
        fields = [int(v) for v in rest.split()[:8]]
        if len(fields) < 8:
            return None
        busy += sum(fields) - fields[3] - fields[4]  # all but idle and iowait
        found += 1
    return busy / tick if found else None


class ThreadGovernor:
    """Fewer torch threads while other processes hold this process's cores; all of them again once they leave.

    Why: an OpenMP team waits at the end of every operation for its slowest thread. On an idle machine a
    long spin before sleeping is what makes 2 threads pay (the demo's step 0.167 s with ``GOMP_SPINCOUNT``
    30000 against 0.211 s with 1000; BENCHMARKS.md, session 10); with another CPU-bound process on the
    cores, the spinning threads and that process take turns and the step collapses (with three such
    processes 3.2 s against 1.1 s). One thread has no team to wait for. So the trainer measures, during its
    own steps, how much of its cores other processes used (``/proc/stat``'s busy time of the cores in this
    process's affinity, less this process's own CPU time) and, every ``window_s`` seconds of steps, runs on
    the cores left over: all threads while others use less than ``busy_core`` of a core, else the whole
    cores left, ``floor(cores - others)`` (at least 1). Where ``/proc/stat`` cannot be read (not Linux) or only one
    thread was asked for, it does nothing.
    """

    def __init__(self, max_threads: int, window_s: float = 1.0, busy_core: float = 0.4):
        self.cpus = _affinity()
        self.max_threads = max(1, int(max_threads))
        self.window_s = float(window_s)
        self.busy_core = float(busy_core)
        self.enabled = self.max_threads > 1 and busy_seconds(self.cpus) is not None
        self.threads = self.max_threads
        self.changes = 0
        self._wall = 0.0
        self._others = 0.0

    @contextmanager
    def measure(self) -> Iterator[None]:
        """Wrap one training step: adds its wall time and the others' CPU time on these cores to the window."""
        if not self.enabled:
            yield
            return
        busy0, own0, wall0 = busy_seconds(self.cpus), time.process_time(), time.perf_counter()
        yield
        busy1, own1, wall1 = busy_seconds(self.cpus), time.process_time(), time.perf_counter()
        if busy0 is None or busy1 is None:
            return
        self._wall += wall1 - wall0
        self._others += max(0.0, (busy1 - busy0) - (own1 - own0))
        if self._wall >= self.window_s:
            self.decide(self._others / self._wall)
            self._wall = self._others = 0.0

    def decide(self, others: float) -> int:
        """Set the thread count for ``others`` cores' worth of other processes' CPU use; returns it."""
        want = self.max_threads
        if others >= self.busy_core:
            # the whole cores left over: a core shared with another process makes the team wait for it
            want = max(1, min(self.max_threads, int(len(self.cpus) - others)))
        if want != self.threads:
            import torch

            torch.set_num_threads(want)
            log.info("other processes use %.1f of this process's %d cores: training on %d thread(s)",
                     others, len(self.cpus), want)
            self.threads = want
            self.changes += 1
        return want


def _affinity() -> set[int]:
    """The cores this process may run on (``os.sched_getaffinity``; all of them where that is missing)."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no sched_getaffinity (macOS, Windows)
        return set(range(os.cpu_count() or 1))
