"""The OpenAI-compatible served backend against an HTTP server on 127.0.0.1, started and stopped here.

The server is tests/served_reference.py: a MINIMAL LOCAL OpenAI-compatible server (standard library)
serving the tiny random Qwen2.5-VL checkpoint through its processor and chat template, which can inject
faults (429, 503, garbage, timeouts, an echoed key). The same backend against a real `transformers serve`
is tested in test_served_transformers_serve.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from served_reference import ReferenceServer

from stvg_plugin.cli import main
from stvg_plugin.data import GroundingQuery, read_queries
from stvg_plugin.models import load_grounder
from stvg_plugin.models.prompted import PromptedGrounder, build_tiny_prompted
from stvg_plugin.models.served import ServerError

KEY_ENV = "STVG_TEST_SERVED_KEY"
KEY = "sk-test-123"
# the tiny checkpoint's image processor: 784..3136 pixels per frame (its pixel answers are rescaled by this)
TINY_PIXELS = {"min_pixels": 28 * 28, "max_pixels": 56 * 56}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_prompted(tmp_path_factory.mktemp("served_ckpt"), seed=0)


@pytest.fixture(scope="module")
def server(ckpt: Path):
    with ReferenceServer(ckpt, model_name="tiny-qwen", api_key=KEY) as srv:
        yield srv


@pytest.fixture
def queries(synth_dir: Path) -> list[GroundingQuery]:
    return read_queries(synth_dir / "annotations.jsonl")[:4]


def _spec(server: ReferenceServer, tmp_path: Path, **extra) -> dict:
    return {"type": "openai_compatible", "base_url": server.base_url, "model_name": "tiny-qwen",
            "api_key_env": KEY_ENV, "concurrency": 3, "num_frames": 3, "max_new_tokens": 24,
            "cache_dir": str(tmp_path / "cache"), "backoff_s": 0.01, **TINY_PIXELS, **extra}


def test_predictions_equal_the_in_process_backend(server, ckpt, queries, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    served = load_grounder(_spec(server, tmp_path))
    got = list(served.predict(queries, progress=False))
    local = list(PromptedGrounder.from_pretrained(ckpt, num_frames=3, max_new_tokens=24, num_workers=0)
                 .predict(queries, progress=False))
    assert [p.qid for p in got] == [q.qid for q in queries]
    for s, p in zip(got, local):
        assert s.error is None and s.raw_text == p.raw_text and s.raw_text
        assert (s.span_frames, s.parse_failed) == (p.span_frames, p.parse_failed)
        assert s.boxes.keys() == p.boxes.keys()
        for f in s.boxes:
            assert s.boxes[f] == pytest.approx(p.boxes[f], abs=1e-9)
    summary = served.run_summary()
    assert summary["requests"] == len(queries) and summary["cache_hits"] == 0
    assert summary["prompt_tokens"] > 0 and summary["latency_s"]["mean"] > 0


def test_stvg_predict_second_run_makes_no_request_and_key_never_written(server, synth_dir, tmp_path, monkeypatch,
                                                                         capsys, caplog):
    monkeypatch.setenv(KEY_ENV, KEY)
    ann = tmp_path / "ann.jsonl"
    ann.write_text("".join(line + "\n" for line in (synth_dir / "annotations.jsonl").read_text().splitlines()[:3]))
    args = ["predict", "model=openai_compatible", f"base_url={server.base_url}", "model_name=tiny-qwen",
            f"api_key_env={KEY_ENV}", "concurrency=2", "recipe=default", f"annotations={ann}", f"video_root={synth_dir}",
            f"model.cache_dir={tmp_path / 'cache'}", "model.num_frames=2", "model.max_new_tokens=8",
            f"+model.max_pixels={TINY_PIXELS['max_pixels']}", f"+model.min_pixels={TINY_PIXELS['min_pixels']}"]
    before = server.requests
    assert main([*args, f"output_dir={tmp_path / 'a'}"]) == 0
    assert server.requests - before == 3
    first = (tmp_path / "a" / "predictions.jsonl").read_text()
    assert main([*args, f"output_dir={tmp_path / 'b'}"]) == 0
    assert server.requests - before == 3  # all answered from the on-disk cache
    assert (tmp_path / "b" / "predictions.jsonl").read_text() == first
    summary = json.loads((tmp_path / "b" / "run_summary.json").read_text())
    assert summary["cache_hits"] == 3 and summary["requests"] == 0
    written = [p.read_text(errors="replace") for d in (tmp_path / "a", tmp_path / "b", tmp_path / "cache")
               for p in d.rglob("*") if p.is_file()]
    assert written and not any(KEY in text for text in written)
    assert KEY not in capsys.readouterr().out and KEY not in caplog.text


def test_retries_on_503_and_429_then_succeeds(server, queries, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    served = load_grounder(_spec(server, tmp_path, concurrency=1))
    server.faults[:] = [503, 429]
    pred = list(served.predict(queries[:1], progress=False))[0]
    assert pred.error is None and pred.raw_text
    assert served.run_summary()["retries"] == 2


@pytest.mark.parametrize(("faults", "expected"), [
    (["garbage"], "garbage answer"),
    ([400], "refused the request (HTTP 400)"),
    (["echo_key"], "bad request from Bearer ***"),  # the key a server echoes is redacted
    ([503, 503], "gave up after 2 attempts: HTTP 503"),
    ([("sleep", 1.5), ("sleep", 1.5)], "gave up after 2 attempts: "),
])
def test_failed_query_gets_a_named_error_and_the_run_goes_on(server, queries, tmp_path, monkeypatch, faults, expected):
    monkeypatch.setenv(KEY_ENV, KEY)
    served = load_grounder(_spec(server, tmp_path, concurrency=1, max_retries=1, timeout_s=0.5))
    server.faults[:] = list(faults)
    preds = list(served.predict(queries[:2], progress=False))
    server.faults.clear()
    assert expected in (preds[0].error or "") and preds[0].boxes == {}
    assert preds[1].error is None and preds[1].raw_text  # the next query is answered normally
    if isinstance(faults[0], tuple):
        assert "timed out" in preds[0].error


def test_wrong_key_stops_the_run_before_any_video(server, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(KEY_ENV, "sk-wrong")
    ann = tmp_path / "ann.jsonl"
    ann.write_text(json.dumps({"qid": "q", "video": str(tmp_path / "no_such_video.mp4"), "query": "x", "fps": 10,
                               "num_frames": 10, "width": 32, "height": 32}) + "\n")
    code = main(["predict", "model=openai_compatible", f"base_url={server.base_url}", "model_name=tiny-qwen",
                 f"api_key_env={KEY_ENV}", f"annotations={ann}", f"output_dir={tmp_path / 'out'}"])
    err = capsys.readouterr().err
    assert code != 0 and f"refused the API key from ${KEY_ENV} (HTTP 401)" in err
    assert "sk-wrong" not in err and not (tmp_path / "out" / "predictions.jsonl").exists()


def test_unreachable_server_is_one_clear_error(tmp_path, monkeypatch):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ServerError, match=rf"cannot reach the server at http://127.0.0.1:{port}/v1/models"):
        load_grounder({"type": "openai_compatible", "base_url": f"http://127.0.0.1:{port}/v1", "model_name": "m"})


def test_missing_key_variable_is_named(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(ServerError, match=f"{KEY_ENV} .* is not set"):
        load_grounder({"type": "openai_compatible", "base_url": "http://127.0.0.1:9/v1", "model_name": "m",
                       "api_key_env": KEY_ENV})


def test_jpeg_frames_are_sent_as_jpeg_data_urls(server, queries, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    served = load_grounder(_spec(server, tmp_path, image_format="jpeg"))
    seen: list[str] = []
    original = served._chat
    monkeypatch.setattr(served, "_chat", lambda payload: seen.append(
        payload["messages"][0]["content"][2]["image_url"]["url"][:23]) or original(payload))
    pred = list(served.predict(queries[:1], progress=False))[0]
    assert pred.error is None and seen == ["data:image/jpeg;base64,"]
