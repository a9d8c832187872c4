"""The App itself, screenshotted in headless Chromium (skipped, with the install step, where Chromium is absent).

Runs the script in its own process: it starts a private mongod and launches the App server, and
neither may leak into the in-process FiftyOne tests (fiftyone binds one database per process).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fiftyone_plugin.app_screenshot import MIN_STD, MISSING, find_chromium, pixel_std

pytestmark = [pytest.mark.slow, pytest.mark.skipif(find_chromium() is None, reason=MISSING)]


def test_app_screenshot_is_not_blank(tmp_path):
    out = tmp_path / "app.png"
    env = {k: v for k, v in os.environ.items() if k != "FIFTYONE_DATABASE_URI"}
    env["FIFTYONE_DO_NOT_TRACK"] = "true"
    modal = tmp_path / "modal.png"
    res = subprocess.run([sys.executable, "-m", "fiftyone_plugin.app_screenshot", "--out", str(out),
                          "--modal-out", str(modal)],
                         env=env, capture_output=True, text=True, timeout=600, check=False)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert pixel_std(out) >= MIN_STD and pixel_std(modal) >= MIN_STD
