"""Shared pytest fixtures: real synthetic videos, generated once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

# One definition of the FiftyOne fixtures for every test module: a session fixture assigned in several
# modules is several fixtures, and a second mongod would find fiftyone connected to the first.
from fo_fixtures import fo_env, synth_ds  # noqa: F401

from stvg_plugin.synth import generate_synthetic, write_bad_videos


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with 6 small synthetic STVG videos, ``annotations.jsonl`` and ``hcstvg.json`` (seed 0).

    Treat it as read-only: it is shared by every test of the session.
    """
    out = tmp_path_factory.mktemp("synth")
    generate_synthetic(out, num_videos=6, seed=0)
    return out


@pytest.fixture(scope="session")
def bad_videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Broken video files by name (see :func:`stvg_plugin.synth.write_bad_videos`); read-only."""
    return write_bad_videos(tmp_path_factory.mktemp("bad_videos"))
