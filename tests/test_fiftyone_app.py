"""The App itself, screenshotted in headless Chromium (skipped, with the install step, where Chromium is absent)."""

from __future__ import annotations

import pytest

from fiftyone_plugin.app_screenshot import MIN_STD, MISSING, find_chromium, main, pixel_std

pytestmark = [pytest.mark.slow, pytest.mark.skipif(find_chromium() is None, reason=MISSING)]


def test_app_screenshot_is_not_blank(tmp_path, monkeypatch):
    monkeypatch.delenv("FIFTYONE_DATABASE_URI", raising=False)  # its own private mongod
    out = tmp_path / "app.png"
    assert main(["--out", str(out)]) == 0
    assert pixel_std(out) >= MIN_STD
