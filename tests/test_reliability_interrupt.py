"""Interruption: a ``stvg predict`` killed half-way resumes to the same ``predictions.jsonl``; outputs are atomic.

The kill is real: ``stvg predict`` runs in a child process (slowed down by a sleep after each
prediction so that the kill lands mid-run), the test polls ``predictions.partial.jsonl`` and sends
SIGKILL once it holds a few complete lines. A re-run must make only the remaining predictions and
write a final file equal to an uninterrupted run's. A torn last line (a write cut by a kill) and a
garbage line are dropped and redone.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import fault_injection
import pytest
from close import assert_close
from fault_injection import FaultySet

from stvg_plugin.cli import main
from stvg_plugin.commands.predict import PARTIAL_NAME, read_partial
from stvg_plugin.data import atomic_write_text, write_json, write_jsonl

faulty_set = fault_injection.faulty_set

# the real `stvg predict`, with a pause after each prediction so a kill can land half-way
_SLOW_PREDICT = """
import sys, time
from stvg_plugin.models import grounder as g
_predict = g.Grounder.predict
def slow(self, queries, progress=True):
    for pred in _predict(self, queries, progress=False):
        yield pred
        time.sleep(0.25)
g.Grounder.predict = slow
from stvg_plugin.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _predict(annotations: Path, out: Path) -> str:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["predict", "model=spacevllm_tiny", "num_frames=4", f"annotations={annotations}",
                     f"output_dir={out}"])
    assert code == 0, buf.getvalue()
    return buf.getvalue()


@pytest.fixture(scope="module")
def reference(faulty_set: FaultySet, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """``predictions.jsonl`` of an uninterrupted run over the mixed set (good and bad videos)."""
    out = tmp_path_factory.mktemp("uninterrupted")
    _predict(faulty_set.mixed, out)
    return (out / "predictions.jsonl").read_bytes()


FRAME_PX = 160  # fault_injection's videos: generate_synthetic's default 160 x 120 frames, the boxes' scale


def assert_same_predictions(path: Path, reference: bytes) -> None:
    """Same lines in the same order as the uninterrupted run (floats within rounding: see close.py)."""
    got = [json.loads(line) for line in path.read_bytes().splitlines()]
    assert_close(got, [json.loads(line) for line in reference.splitlines()], path.name, scale=FRAME_PX)


def _complete_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def test_killed_predict_resumes_to_the_uninterrupted_result(faulty_set: FaultySet, reference: bytes,
                                                             tmp_path: Path) -> None:
    out = tmp_path / "run"
    partial = out / PARTIAL_NAME
    total = len(reference.splitlines())
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", _SLOW_PREDICT, "predict", "model=spacevllm_tiny", "num_frames=4",
         f"annotations={faulty_set.mixed}", f"output_dir={out}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while _complete_lines(partial) < 3:
            assert proc.poll() is None, f"predict ended before the kill: {proc.stderr.read().decode()[-2000:]}"
            assert time.monotonic() < deadline, "no partial predictions within 120 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    made = _complete_lines(partial)
    assert 3 <= made < total, "the kill must land half-way"
    assert not (out / "predictions.jsonl").exists(), "no final output from a killed run"

    errors = sum(b'"error": ' in line for line in partial.read_bytes().split(b"\n")[:-1])  # complete lines; retried
    printed = _predict(faulty_set.mixed, out)
    resumed = re.search(r"resuming: (\d+) predictions already made, (\d+) to go", printed)
    assert resumed, printed
    assert int(resumed[1]) >= made - errors and int(resumed[1]) + int(resumed[2]) == total  # only the rest was redone
    assert_same_predictions(out / "predictions.jsonl", reference)
    assert not partial.exists()


def test_torn_and_garbage_lines_are_dropped_and_redone(faulty_set: FaultySet, reference: bytes,
                                                       tmp_path: Path) -> None:
    lines = reference.splitlines(keepends=True)
    out = tmp_path / "run"
    out.mkdir()
    partial = out / PARTIAL_NAME
    # 3 complete lines, a garbage line, a line that is JSON but not a prediction, and a torn last line
    partial.write_bytes(b"".join(lines[:2]) + b"{not json\n" + b'{"qid": "x", "boxes": 5}\n' + lines[2]
                        + lines[3][: len(lines[3]) // 2])
    done = read_partial(partial)
    assert sorted(done) == sorted(json.loads(line)["qid"] for line in lines[:3])
    assert partial.read_bytes() == b"".join(lines[:3]), "rewritten without the bad lines"
    partial.write_bytes(b"".join(lines[:3]) + lines[3][:-5])  # torn again, for the command itself
    printed = _predict(faulty_set.mixed, out)
    errors = sum(1 for line in lines[:3] if json.loads(line).get("error"))  # made again on resume (retry_errors)
    assert f"resuming: {3 - errors} predictions already made, {len(lines) - 3 + errors} to go" in printed
    assert_same_predictions(out / "predictions.jsonl", reference)


def test_resume_false_starts_over(faulty_set: FaultySet, reference: bytes, tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    stale = {"qid": json.loads(reference.splitlines()[0])["qid"], "span_frames": [0, 1], "boxes": {}}
    (out / PARTIAL_NAME).write_text(json.dumps(stale) + "\n", encoding="utf-8")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["predict", "model=spacevllm_tiny", "num_frames=4", f"annotations={faulty_set.mixed}",
                     f"output_dir={out}", "resume=false"]) == 0
    assert "resuming" not in buf.getvalue()
    assert_same_predictions(out / "predictions.jsonl", reference)


@pytest.mark.parametrize("writer", ["write_jsonl", "write_json", "atomic_write_text"])
def test_failed_write_leaves_the_old_file_whole(tmp_path: Path, writer: str) -> None:
    """Every final output (``predictions.jsonl``, ``per_query.jsonl``, ``summary.json``) goes through these."""
    path = tmp_path / "out.jsonl"
    path.write_text("old\n", encoding="utf-8")

    def rows():
        yield {"qid": "a"}
        raise KeyboardInterrupt  # an interruption half-way through the write

    class Boom:
        def __str__(self) -> str:
            raise KeyboardInterrupt

    with pytest.raises((KeyboardInterrupt, TypeError)):
        if writer == "write_jsonl":
            write_jsonl(path, rows())
        elif writer == "write_json":
            write_json(path, {"a": object()})  # not serialisable: fails before anything is replaced
        else:
            atomic_write_text(path, Boom())
    assert path.read_text(encoding="utf-8") == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"], "no temporary file left behind"


def test_final_outputs_of_the_commands_are_written_atomically() -> None:
    """The commands write their final files only through the atomic writers (no plain ``open(..., "w")``)."""
    import ast
    import inspect

    from stvg_plugin.commands import evaluate, predict

    for module in (evaluate, predict):
        tree = ast.parse(inspect.getsource(module))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                name = node.func.attr
                assert name not in ("write_text", "write_bytes"), f"{module.__name__}:{node.lineno}"
                if name == "open" and node.args and isinstance(node.args[0], ast.Constant):
                    assert node.args[0].value in ("a", "r", "rb"), f"{module.__name__}:{node.lineno}"
