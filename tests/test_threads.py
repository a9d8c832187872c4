"""The CPU thread policy (stvg_plugin/util/threads.py): a short OpenMP spin set before torch loads,
thread counts from the cores the process may use. Its effect on step time is a benchmark
(bench/bench_thread_policy.py), not a test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from stvg_plugin.util.threads import set_openmp_env, set_torch_threads, usable_cores

ROOT = Path(__file__).resolve().parents[1]


def test_openmp_env_defaults_do_not_override_the_callers():
    env: dict[str, str] = {}
    assert set_openmp_env(env) == {"GOMP_SPINCOUNT": "1000", "OMP_NUM_THREADS": str(usable_cores())}
    assert env["GOMP_SPINCOUNT"] == "1000" and "OMP_WAIT_POLICY" not in env
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
    assert out.stdout.strip().splitlines()[-1] == "1000 False"
