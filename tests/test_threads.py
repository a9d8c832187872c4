"""The CPU thread policy (stvg_plugin/util/threads.py): an OpenMP spin count set before torch loads,
thread counts from the cores the process may use, and the trainer's governor that runs on fewer threads
while other processes use those cores. Its effect on step time is a benchmark
(bench/bench_thread_policy.py), not a test."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from stvg_plugin.util.threads import ThreadGovernor, busy_seconds, set_openmp_env, set_torch_threads, usable_cores

ROOT = Path(__file__).resolve().parents[1]


def test_openmp_env_defaults_do_not_override_the_callers():
    env: dict[str, str] = {}
    assert set_openmp_env(env) == {"GOMP_SPINCOUNT": "30000", "OMP_NUM_THREADS": str(usable_cores())}
    assert env["GOMP_SPINCOUNT"] == "30000" and "OMP_WAIT_POLICY" not in env
    mine = {"OMP_WAIT_POLICY": "ACTIVE", "OMP_NUM_THREADS": "3"}
    assert set_openmp_env(mine) == {} and mine == {"OMP_WAIT_POLICY": "ACTIVE", "OMP_NUM_THREADS": "3"}
    # a caller's passive waiting is not turned into spinning by our spin count
    passive = {"OMP_WAIT_POLICY": "PASSIVE"}
    assert set_openmp_env(passive) == {"OMP_NUM_THREADS": str(usable_cores())} and "GOMP_SPINCOUNT" not in passive


def test_usable_cores_follow_the_affinity():
    assert usable_cores() == len(os.sched_getaffinity(0))


def test_torch_threads_default_to_usable_cores_and_are_capped():
    before = torch.get_num_threads()
    try:
        assert set_torch_threads(None) == usable_cores() == torch.get_num_threads()
        assert set_torch_threads(usable_cores() + 5) == usable_cores()
        assert set_torch_threads(1) == 1 == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def test_stvg_entry_point_sets_the_policy_before_torch_loads():
    """libgomp reads GOMP_SPINCOUNT when it loads: the entry point must set it while torch is not imported."""
    code = ("import os, sys\nfrom stvg_plugin.cli import main\nmain(['--help'])\n"
            "print(os.environ.get('GOMP_SPINCOUNT'), 'torch' in sys.modules)\n")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "30000 False"


def test_busy_seconds_sums_the_affinity_cores_busy_time(tmp_path):
    tick = os.sysconf("SC_CLK_TCK")
    stat = tmp_path / "stat"
    #                user nice system idle iowait irq softirq steal guest guest_nice
    stat.write_text("cpu  900 0 90 9000 90 0 0 0 0 0\n"
                    "cpu0 100 1 10 5000 50 2 3 4 0 0\n"
                    "cpu1 200 2 20 4000 40 0 0 0 0 0\n"
                    "cpu12 600 0 60 0 0 0 0 0 0 0\n"
                    "intr 12345\n")
    assert busy_seconds({0}, stat) == (100 + 1 + 10 + 2 + 3 + 4) / tick  # idle and iowait left out
    assert busy_seconds({0, 1}, stat) == (120 + 222) / tick
    assert busy_seconds({12}, stat) == 660 / tick  # cpu12 is not cpu1
    assert busy_seconds({5}, stat) is None
    assert busy_seconds({0}, tmp_path / "missing") is None


def test_governor_runs_on_the_cores_others_leave_and_comes_back():
    before = torch.get_num_threads()
    gov = ThreadGovernor(2)
    gov.cpus = {0, 1}
    try:
        assert gov.decide(0.1) == 2 and gov.changes == 0  # a light neighbour: all threads
        assert gov.decide(0.45) == 1 == torch.get_num_threads()  # one whole core left
        assert gov.decide(1.6) == 1 and gov.changes == 1
        assert gov.decide(0.0) == 2 == torch.get_num_threads() and gov.changes == 2
        wide = ThreadGovernor(16)
        wide.cpus = set(range(16))
        assert wide.decide(3.2) == 12 and wide.decide(15.5) == 1 and wide.decide(0.3) == 16
    finally:
        torch.set_num_threads(before)
    one = ThreadGovernor(1)
    assert not one.enabled
    with one.measure():
        pass
    assert one.threads == 1 and one.changes == 0


@pytest.mark.skipif(usable_cores() < 2 or busy_seconds(set(os.sched_getaffinity(0))) is None,
                    reason="needs 2 usable cores and /proc/stat")
def test_governor_drops_a_thread_when_another_process_takes_a_core():
    """A real neighbour: a CPU-bound process on the same two cores as a governed 2-thread loop (both
    pinned, so the test means the same on a machine with more cores); the governor sees it within a window."""
    two = set(sorted(os.sched_getaffinity(0))[:2])

    def pin() -> None:
        os.sched_setaffinity(0, two)

    code = ("import time, torch\n"
            "from stvg_plugin.util.threads import ThreadGovernor\n"
            "torch.set_num_threads(2)\n"
            "gov = ThreadGovernor(2, window_s=0.5)\n"
            "x = torch.randn(256, 256)\n"
            "deadline = time.monotonic() + 30\n"
            "while gov.threads == 2 and time.monotonic() < deadline:\n"
            "    with gov.measure():\n"
            "        for _ in range(20):\n"
            "            x = (x @ x).tanh()\n"
            "print(gov.threads, torch.get_num_threads(), len(gov.cpus))\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    load = subprocess.Popen([sys.executable, "-c", "while True: pass"], preexec_fn=pin)
    try:
        time.sleep(0.3)
        out = subprocess.run([sys.executable, "-c", code], env=env, preexec_fn=pin, capture_output=True, text=True,
                             timeout=120, check=True)
    finally:
        load.kill()
        load.wait()
    assert out.stdout.split() == ["1", "1", "2"]
