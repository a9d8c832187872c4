"""Progress bars that redraw in place on a terminal and stay quiet when written to a log file.

Why: tqdm writes one record per refresh (10 per second) whatever its output is; redirected to a
file (``stvg demo > demo.log``, CI, a delegated FiftyOne run) that is tens of thousands of lines. On a
terminal the bar keeps tqdm's defaults; elsewhere it refreshes at most every ``FILE_MIN_SECONDS``
seconds and every ``FILE_STEP_FRACTION`` of the total.
"""

from __future__ import annotations

import sys
from typing import IO, Any

FILE_MIN_SECONDS = 5.0
FILE_STEP_FRACTION = 0.05


def is_terminal(stream: IO | None) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (ValueError, OSError):  # a closed stream
        return False


def progress_bar(total: int | None = None, **kwargs: Any):
    """``tqdm(total=..., **kwargs)`` with a low refresh rate unless its output is a terminal."""
    from tqdm.auto import tqdm

    stream = kwargs.get("file") or sys.stderr
    if not is_terminal(stream):
        kwargs.setdefault("mininterval", FILE_MIN_SECONDS)
        kwargs.setdefault("miniters", max(1, int((total or 0) * FILE_STEP_FRACTION)))
    return tqdm(total=total, **kwargs)
