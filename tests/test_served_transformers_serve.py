"""The served backend against a real `transformers serve` on 127.0.0.1, started and stopped here.

The server runs the tiny random Qwen2.5-VL checkpoint (saved with save_pretrained, tokenizer and image
processor included) in the side venv ``.venv-vision/`` (see tests/vision_venv.py for why a side venv).
Its predictions must equal the in-process backend's for the same checkpoint and prompt, and a second
run must send no request: the server's own access log counts what reached it. The retry, fault and
key tests are in test_served.py, against a stand-in server that can inject faults.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from vision_venv import vision_env, vision_python

from stvg_plugin.cli import main
from stvg_plugin.data import GroundingQuery, read_queries
from stvg_plugin.models import load_grounder
from stvg_plugin.models.prompted import PromptedGrounder, build_tiny_prompted

pytestmark = pytest.mark.slow

# the tiny checkpoint's image processor budget (784..3136 pixels per frame): its pixel answers are rescaled by it
TINY_PIXELS = {"min_pixels": 28 * 28, "max_pixels": 56 * 56}
START_TIMEOUT_S = 180
CHAT_LINE = re.compile(r'"POST /v1/chat/completions HTTP/1\.[01]" 200')


class TransformersServe:
    """``transformers serve CKPT --host 127.0.0.1 --port P --device cpu`` as a subprocess of the side venv."""

    def __init__(self, checkpoint: Path, log_path: Path):
        self.checkpoint, self.log_path = checkpoint, log_path
        with socket.socket() as s:  # a free port on the loopback interface
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.proc: subprocess.Popen | None = None

    def start(self) -> TransformersServe:
        cmd = [str(vision_python()), "-m", "transformers.cli.transformers", "serve", str(self.checkpoint),
               "--host", "127.0.0.1", "--port", str(self.port), "--device", "cpu", "--log-level", "info"]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=vision_env())
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"transformers serve exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as resp:  # noqa: S310 (loopback)
                    if resp.status == 200:
                        return self
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise AssertionError(f"transformers serve did not answer in {START_TIMEOUT_S} s:\n{self.log()[-3000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def chat_requests(self) -> int:
        """Chat completions the server answered, from its own (uvicorn) access log."""
        return len(CHAT_LINE.findall(self.log()))


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_prompted(tmp_path_factory.mktemp("serve_ckpt"), seed=0)


@pytest.fixture(scope="module")
def server(ckpt: Path, tmp_path_factory: pytest.TempPathFactory):
    srv = TransformersServe(ckpt, tmp_path_factory.mktemp("serve_log") / "server.log").start()
    try:
        yield srv
    finally:
        srv.stop()
    assert srv.proc.returncode is not None  # stopped at the end, not left running


@pytest.fixture
def queries(synth_dir: Path) -> list[GroundingQuery]:
    return read_queries(synth_dir / "annotations.jsonl")[:4]


def _spec(server: TransformersServe, cache_dir: Path) -> dict:
    return {"type": "openai_compatible", "base_url": server.base_url, "model_name": str(server.checkpoint),
            "concurrency": 2, "num_frames": 3, "max_new_tokens": 24, "cache_dir": str(cache_dir),
            "backoff_s": 0.01, **TINY_PIXELS}


def _same_predictions(got, expected) -> None:
    assert [p.qid for p in got] == [p.qid for p in expected]
    for s, p in zip(got, expected):
        assert s.error is None and s.raw_text == p.raw_text and s.raw_text
        assert (s.span_frames, s.parse_failed) == (p.span_frames, p.parse_failed)
        assert s.boxes.keys() == p.boxes.keys()
        for f in s.boxes:
            # the same answer text parsed and rescaled by the same code: equal up to float64 rounding
            assert s.boxes[f] == pytest.approx(p.boxes[f], rel=1e-12, abs=1e-9)


def test_transformers_serve_predictions_equal_in_process_and_a_rerun_sends_nothing(server, ckpt, queries, tmp_path):
    local = list(PromptedGrounder.from_pretrained(ckpt, num_frames=3, max_new_tokens=24, num_workers=0)
                 .predict(queries, progress=False))
    before = server.chat_requests()
    served = load_grounder(_spec(server, tmp_path / "cache"))
    got = list(served.predict(queries, progress=False))
    _same_predictions(got, local)
    summary = served.run_summary()
    assert summary["requests"] == len(queries) and summary["cache_hits"] == 0 and summary["errors"] == 0
    assert summary["prompt_tokens"] > 0 and summary["completion_tokens"] > 0
    assert server.chat_requests() - before == len(queries)

    again = load_grounder(_spec(server, tmp_path / "cache"))
    _same_predictions(list(again.predict(queries, progress=False)), local)
    assert again.run_summary()["requests"] == 0 and again.run_summary()["cache_hits"] == len(queries)
    assert server.chat_requests() - before == len(queries)  # nothing reached the server the second time


def test_stvg_predict_through_transformers_serve_twice(server, synth_dir, tmp_path):
    ann = tmp_path / "ann.jsonl"
    ann.write_text("".join(line + "\n" for line in (synth_dir / "annotations.jsonl").read_text().splitlines()[:3]))
    args = ["predict", "model=openai_compatible", f"base_url={server.base_url}", f"model_name={server.checkpoint}",
            "concurrency=1", f"annotations={ann}", f"video_root={synth_dir}", f"model.cache_dir={tmp_path / 'cache'}",
            "model.num_frames=2", "model.max_new_tokens=8",
            f"+model.max_pixels={TINY_PIXELS['max_pixels']}", f"+model.min_pixels={TINY_PIXELS['min_pixels']}"]
    before = server.chat_requests()
    assert main([*args, f"output_dir={tmp_path / 'a'}"]) == 0
    assert server.chat_requests() - before == 3
    first = (tmp_path / "a" / "predictions.jsonl").read_text()
    assert first and not any(json.loads(line).get("error") for line in first.splitlines())
    assert main([*args, f"output_dir={tmp_path / 'b'}"]) == 0
    assert server.chat_requests() - before == 3
    assert (tmp_path / "b" / "predictions.jsonl").read_text() == first
    summary = json.loads((tmp_path / "b" / "run_summary.json").read_text())
    assert summary["cache_hits"] == 3 and summary["requests"] == 0
