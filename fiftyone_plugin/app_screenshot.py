"""Screenshot the FiftyOne App showing a grounded dataset: the App itself, checked without a person.

    python -m fiftyone_plugin.app_screenshot [--out docs/app.png] [--modal-out docs/app_modal.png]
                                             [--dataset NAME] [--port 5151]

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


def _shot(url: str, out: str | os.PathLike, chromium: str | None, retries: int = 1) -> tuple[Path, float]:
    """:func:`screenshot` and its :func:`pixel_std`; a blank page is taken again with three times the wait:
    on a busy machine the App's first load can outlast Chromium's time budget (a CI run beside two training
    jobs got a blank page once; the same test passes on an idle machine)."""
    wait_ms = 15000
    path = screenshot(url, out, wait_ms=wait_ms, chromium=chromium)
    std = pixel_std(path)
    for _ in range(retries):
        if std >= MIN_STD:
            break
        print(f"app_screenshot: {path} looks blank (grayscale std {std:.1f}); taking it again with a longer wait",
              file=sys.stderr)
        wait_ms *= 3
        path = screenshot(url, out, wait_ms=wait_ms, chromium=chromium)
        std = pixel_std(path)
    return path, std


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


SHIFTED_RUN = "shifted_gt"  # demo-only run: GT moved by 0.5 s and 6 px, so a second tube overlaps the first


def _shifted_gt(queries):
    """Predictions that are the GT tube 0.5 s early and 6 px right/down: overlapping the GT tube on the
    clip's first frame, where the App's modal opens."""
    from stvg_plugin.data import GroundingPrediction

    out = []
    for q in queries:
        if q.span_frames is None:
            continue
        shift = max(1, int(round(q.fps / 2)))
        s, e = q.span_frames
        span = (max(s - shift, 0), max(e - shift, 1))
        boxes = {f - shift: [x1 + 6, y1 + 6, x2 + 6, y2 + 6] for f, (x1, y1, x2, y2) in q.boxes.items()
                 if span[0] <= f - shift < span[1]}
        out.append(GroundingPrediction(qid=q.qid, span_frames=span, boxes=boxes))
    return out


def build_demo_dataset(work: Path, name: str):
    """Synthetic videos -> import -> ground (tiny model, run ``pred``) -> evaluate; plus the run ``shifted_gt``
    (GT shifted, see :func:`_shifted_gt`): the random tiny model's boxes seldom meet the GT tube on screen."""
    from stvg_plugin.data import read_queries
    from stvg_plugin.synth import generate_synthetic

    from .io import attach_predictions, evaluate_grounding, ground_videos, import_benchmark

    generate_synthetic(work / "synth", num_videos=4, seed=0)
    ds, _ = import_benchmark("synth", work / "synth", name, overwrite=True)
    ground_videos(ds, "pred")
    evaluate_grounding(ds, "pred", "ev")
    attach_predictions(ds, _shifted_gt(read_queries(work / "synth" / "annotations.jsonl")), SHIFTED_RUN)
    return ds


def _modal_view(ds, eval_key: str | None = None):
    """The view whose first sample the modal shows: the query clips (saved view ``per_query``; a clip opens
    on its GT span, so both tubes are on screen), best-scored first, else the dataset (opens on frame 1)."""
    from .io import QUERY_VIEW

    if QUERY_VIEW not in ds.list_saved_views():
        return ds.view()
    clips = ds.load_saved_view(QUERY_VIEW)
    scores = [f for f in clips.get_field_schema(flat=True) if f.startswith("gt_spans.") and f.endswith("_vIoU")]
    if eval_key is not None and f"gt_spans.{eval_key}_vIoU" in scores:
        scores = [f"gt_spans.{eval_key}_vIoU"]
    return clips.sort_by(scores[0], reverse=True) if scores else clips


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "docs" / "app.png"))
    ap.add_argument("--modal-out", default=None, help="also screenshot the first sample's modal (GT and predicted tubes)")
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
        out, std = _shot(url, args.out, chromium)
        if std < MIN_STD:
            print(f"app_screenshot: {out} looks blank (grayscale std {std:.1f} < {MIN_STD})", file=sys.stderr)
            return 1
        print(f"wrote {out} (grayscale std {std:.1f})")
        if args.modal_out:  # the session's view, and the App opens a sample's modal from ?id=<sample id>
            view = _modal_view(ds, None if args.dataset else SHIFTED_RUN)
            session.view = view
            modal, std = _shot(f"{url}?id={view.first().id}", args.modal_out, chromium)
            if std < MIN_STD:
                print(f"app_screenshot: {modal} looks blank (grayscale std {std:.1f} < {MIN_STD})", file=sys.stderr)
                return 1
            print(f"wrote {modal} (grayscale std {std:.1f})")
        return 0
    finally:
        if session is not None:
            session.close()
        if proc is not None:
            stop_mongod(proc)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
