"""Screenshot the FiftyOne App showing a grounded dataset: the App itself, checked without a person.

    python -m fiftyone_plugin.app_screenshot [--out docs/app.png] [--dataset NAME] [--port 5151]

Without ``--dataset`` it builds one: ``stvg synth`` videos, imported, grounded with the tiny model and
evaluated. The App listens on 127.0.0.1 only; headless Chromium (Debian: ``apt-get install -y
chromium``) takes the picture, which must not be blank (grayscale standard deviation above a floor).
Exit status 2 with a one-line reason when Chromium is missing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
MISSING = "headless Chromium not found (/usr/bin/chromium); install it with: apt-get install -y chromium"
MIN_STD = 8.0


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


def screenshot(url: str, out: str | os.PathLike, *, size: tuple[int, int] = (1400, 900), wait_ms: int = 15000,
               chromium: str | None = None) -> Path:  # fmt: skip
    """Load ``url`` in headless Chromium (no network besides loopback, throwaway profile) and save a PNG."""
    chromium = chromium or find_chromium()
    if chromium is None:
        raise FileNotFoundError(MISSING)
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="stvg_chromium_") as profile:
        cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}",
               f"--virtual-time-budget={wait_ms}", f"--screenshot={out}", url]  # fmt: skip
        subprocess.run(cmd, check=True, capture_output=True, timeout=180)
    if not out.is_file():
        raise RuntimeError(f"Chromium wrote no screenshot for {url}")
    return out


def pixel_std(png: str | os.PathLike) -> float:
    import numpy as np
    from PIL import Image

    with Image.open(png) as im:
        return float(np.asarray(im.convert("L"), dtype=np.float64).std())


def _wait_http(url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"the App did not answer on {url}")


def build_demo_dataset(work: Path, name: str):
    """Synthetic videos -> import -> ground (tiny model) -> evaluate; returns the dataset."""
    from stvg_plugin.synth import generate_synthetic

    from .io import evaluate_grounding, ground_videos, import_benchmark

    generate_synthetic(work / "synth", num_videos=4, seed=0)
    ds, _ = import_benchmark("synth", work / "synth", name, overwrite=True)
    ground_videos(ds, "pred")
    evaluate_grounding(ds, "pred", "ev")
    return ds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "docs" / "app.png"))
    ap.add_argument("--dataset", default=None, help="an existing grounded dataset (default: build a demo one)")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args(argv)

    chromium = find_chromium()
    if chromium is None:
        print(f"app_screenshot: {MISSING}", file=sys.stderr)
        return 2
    from .db import ensure_database, free_port, start_mongod, stop_mongod

    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    work = Path(tempfile.mkdtemp(prefix="stvg_app_"))
    proc = None
    if not os.environ.get("FIFTYONE_DATABASE_URI") and not args.dataset:  # a demo dataset in a private database
        uri, proc = start_mongod(work / "db")
        os.environ["FIFTYONE_DATABASE_URI"] = uri
    ensure_database(check_binary=False)
    session = None
    try:
        import fiftyone as fo

        ds = fo.load_dataset(args.dataset) if args.dataset else build_demo_dataset(work, "stvg_app_demo")
        port = args.port or free_port()
        session = fo.launch_app(ds, address="127.0.0.1", port=port, remote=True, auto=False)
        url = f"http://127.0.0.1:{port}/datasets/{ds.name}"
        _wait_http(f"http://127.0.0.1:{port}/")
        out = screenshot(url, args.out, chromium=chromium)
        std = pixel_std(out)
        if std < MIN_STD:
            print(f"app_screenshot: {out} looks blank (grayscale std {std:.1f} < {MIN_STD})", file=sys.stderr)
            return 1
        print(f"wrote {out} (grayscale std {std:.1f})")
        return 0
    finally:
        if session is not None:
            session.close()
        if proc is not None:
            stop_mongod(proc)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
