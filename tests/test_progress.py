"""Progress bars: tqdm's in-place bar on a terminal, a few records when the output is a file."""

from __future__ import annotations

import io

from stvg_plugin.util.progress import FILE_MIN_SECONDS, FILE_STEP_FRACTION, progress_bar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _records(text: str) -> int:
    """Redraws written: tqdm starts each with a carriage return."""
    return text.count("\r")


def test_file_output_is_rate_limited() -> None:
    log = io.StringIO()
    bar = progress_bar(total=2000, file=log, desc="grounding")
    assert bar.mininterval == FILE_MIN_SECONDS and bar.miniters == int(2000 * FILE_STEP_FRACTION)
    for _ in range(2000):
        bar.update(1)
    bar.close()
    # the opening record and the closing one; a plain tqdm bar adds one per refresh (100 with miniters=20 here)
    assert _records(log.getvalue()) <= 3, log.getvalue()
    assert "2000/2000" in log.getvalue()


def test_terminal_output_keeps_tqdm_defaults() -> None:
    term = _Terminal()
    bar = progress_bar(total=2000, file=term)
    assert bar.mininterval < 1 and bar.dynamic_miniters
    bar.close()


def test_plain_tqdm_would_write_many_records_to_a_file() -> None:
    """The reference the file case is measured against (same updates, tqdm's own settings but no time gate)."""
    from tqdm import tqdm

    log = io.StringIO()
    bar = tqdm(total=2000, file=log, mininterval=0, miniters=20)
    for _ in range(2000):
        bar.update(1)
    bar.close()
    assert _records(log.getvalue()) > 50
