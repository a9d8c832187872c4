"""Grounding through any OpenAI-compatible chat-completions server (vLLM, SGLang, ``transformers serve``,
commercial endpoints): the prompted backend's prompt and parser, the model behind an HTTP API.

* Frames go as ``image_url`` items (PNG data URLs, lossless; ``image_format="jpeg"`` for size-limited
  endpoints) with their timestamps in the text, in the
  same message layout as the in-process backend (``PromptStyle.messages``), so a server applying the
  family's chat template sees the same prompt.
* At most ``concurrency`` requests are in flight; 429, 5xx, timeouts and dropped connections are
  retried with exponential backoff (``Retry-After`` honoured); anything still failing, a refusal
  (another 4xx) or an unreadable body gives that query an ``error`` prediction naming the reason.
* Every answer is cached on disk under ``cache_dir``, keyed by model name, the messages' text, the
  frames' bytes and the generation settings: a re-run or a resumed run sends no request.
* The API key is read from the environment variable ``api_key_env`` and only ever put in the
  ``Authorization`` header: never in a prediction, a cache file, a log line or an error message.
* :meth:`ServedGrounder.check_server` (called on load, before any video is decoded) stops the run
  in seconds with one message on a wrong key (401/403) or an unreachable server.
* :meth:`ServedGrounder.run_summary` gives request counts, latency and token usage.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stvg_plugin.data import GroundingPrediction, GroundingQuery, StvgError, atomic_write_text
from stvg_plugin.models.decoding import answer_to_prediction
from stvg_plugin.models.families import get_family
from stvg_plugin.prompts import PromptStyle, resolve_style
from stvg_plugin.recipes import get_recipe
from stvg_plugin.video import PrefetchLoader, SampledVideo, VideoReadError, sample_video

log = logging.getLogger("stvg.served")

_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
_MAX_ERROR_CHARS = 200


class ServerError(StvgError):
    """The server cannot be used at all (unreachable, wrong key): the run stops before any video."""


class _QueryFailure(Exception):
    """One request failed for good: its query gets an ``error`` prediction with this message."""


@dataclass
class _Stats:
    requests: int = 0
    cache_hits: int = 0
    retries: int = 0
    errors: int = 0
    latencies_s: list[float] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _clip(text: str, secret: str | None = None) -> str:
    text = " ".join(str(text).split())
    if secret:
        text = text.replace(secret, "***")  # a server that echoes the key must not put it in our outputs
    return text if len(text) <= _MAX_ERROR_CHARS else text[:_MAX_ERROR_CHARS] + "..."


IMAGE_FORMATS = ("png", "jpeg")


def _image_data_url(frame: np.ndarray, image_format: str = "png") -> tuple[str, bytes]:
    """A frame as a data URL: PNG is lossless (the server sees our exact pixels), JPEG (quality 95) is
    ~10x smaller for endpoints that limit request size."""
    from PIL import Image

    buf = io.BytesIO()
    image = Image.fromarray(np.ascontiguousarray(frame))
    if image_format == "jpeg":
        image.save(buf, format="JPEG", quality=95)
    else:
        image.save(buf, format="PNG")
    data = buf.getvalue()
    return f"data:image/{image_format};base64," + base64.b64encode(data).decode("ascii"), data


class ServedGrounder:
    """Same interface as the other grounders: ``predict(queries)`` (and ``ground(video, queries)``)."""

    def __init__(
        self,
        base_url: str,
        model_name: str,
        *,
        family: str = "qwen2_5_vl",
        style: PromptStyle | str | dict | None = None,
        recipe: str | None = None,
        api_key_env: str | None = None,
        concurrency: int = 4,
        num_frames: int | None = 8,
        sample_fps: float | None = None,
        max_frames: int | None = None,
        frame_size: tuple[int, int] | None = None,
        max_pixels: int | None = None,
        min_pixels: int | None = None,
        max_new_tokens: int = 256,
        timeout_s: float = 120.0,
        connect_timeout_s: float = 5.0,
        max_retries: int = 4,
        backoff_s: float = 1.0,
        cache_dir: str | Path | None = None,
        num_workers: int = 2,
        image_format: str = "png",
    ):
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise StvgError(f"base_url must be an http(s) URL such as http://127.0.0.1:8000/v1, got {base_url!r}")
        if not model_name:
            raise StvgError("model_name is required: the name the server knows the model by (GET /v1/models)")
        if image_format not in IMAGE_FORMATS:
            raise StvgError(f"image_format must be one of {IMAGE_FORMATS}, got {image_format!r}")
        self.image_format = image_format
        self.base_url = base_url.rstrip("/")
        self.model_name = str(model_name)
        self.spec = get_family(family)
        self.family = self.spec.name
        self.style = resolve_style(style, self.family)
        if recipe:
            self.style = get_recipe(str(recipe)).apply(self.style)
        self.recipe = recipe or "default"
        self.api_key_env = api_key_env
        self._api_key = None
        if api_key_env:
            self._api_key = os.environ.get(api_key_env) or None
            if self._api_key is None:
                raise ServerError(f"environment variable {api_key_env} (api_key_env) is not set or empty")
        self.concurrency = max(1, int(concurrency))
        self.sampling = {"num_frames": num_frames, "fps": sample_fps, "max_frames": max_frames, "size": frame_size}
        self.max_pixels, self.min_pixels = max_pixels, min_pixels
        self.max_new_tokens = int(max_new_tokens)
        self.timeout_s, self.connect_timeout_s = float(timeout_s), float(connect_timeout_s)
        self.max_retries, self.backoff_s = max(0, int(max_retries)), float(backoff_s)
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else None
        self.num_workers = num_workers
        self.stats = _Stats()

    # ------------------------------------------------------------------ HTTP

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _call(self, method: str, path: str, body: dict | None, timeout: float) -> tuple[int, bytes, dict]:
        """One HTTP exchange -> (status, body, headers); raises ``OSError``/``URLError`` on transport errors."""
        data = None if body is None else json.dumps(body).encode("utf-8")
        req = urllib.request.Request(self.base_url + path, data=data, method=method, headers=self._headers())
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (operator-given http(s) URL)
                return resp.status, resp.read(), dict(resp.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read() or b"", dict(exc.headers or {})

    def check_server(self) -> None:
        """Fail fast, before any video is decoded: the server answers and accepts the key."""
        where = f"{self.base_url}/models"
        try:
            status, body, _ = self._call("GET", "/models", None, self.connect_timeout_s)
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ServerError(f"cannot reach the server at {where}: {_clip(reason)}") from None
        if status in (401, 403):
            key = f"the API key from ${self.api_key_env}" if self.api_key_env else "no API key (set api_key_env)"
            raise ServerError(f"{where} refused {key} (HTTP {status})")
        if status >= 400:
            detail = _clip(body.decode("utf-8", "replace"), self._api_key)
            raise ServerError(f"{where} answered HTTP {status}: {detail}")
        try:
            names = [m.get("id") for m in json.loads(body).get("data", [])]
        except (ValueError, AttributeError):
            raise ServerError(f"{where} did not answer an OpenAI model list") from None
        if names and self.model_name not in names:
            log.warning("server lists models %s, not %r; requests may be refused", names[:10], self.model_name)

    def _chat(self, payload: dict) -> dict:
        """POST /chat/completions with retries; returns the parsed JSON or raises ``_QueryFailure``."""
        last = "no attempt"
        for attempt in range(self.max_retries + 1):
            if attempt:
                with self.stats.lock:
                    self.stats.retries += 1
            t0 = time.perf_counter()
            try:
                status, body, headers = self._call("POST", "/chat/completions", payload, self.timeout_s)
            except TimeoutError as exc:
                last = f"timed out after {self.timeout_s:g} s ({_clip(exc)})"
                self._sleep(attempt, None)
                continue
            except (urllib.error.URLError, ConnectionError, OSError) as exc:
                last = f"connection failed: {_clip(getattr(exc, 'reason', exc))}"
                self._sleep(attempt, None)
                continue
            with self.stats.lock:
                self.stats.requests += 1
                self.stats.latencies_s.append(time.perf_counter() - t0)
            text = body.decode("utf-8", "replace")
            if status in _RETRY_STATUS:
                last = f"HTTP {status}: {_clip(text, self._api_key)}"
                self._sleep(attempt, headers.get("Retry-After") or headers.get("retry-after"))
                continue
            if status >= 400:
                raise _QueryFailure(f"server refused the request (HTTP {status}): {_clip(text, self._api_key)}")
            try:
                obj = json.loads(text)
                content = obj["choices"][0]["message"]["content"]
            except (ValueError, KeyError, IndexError, TypeError):
                detail = _clip(text, self._api_key)
                raise _QueryFailure(f"garbage answer from the server (not a chat completion): {detail}") from None
            if not isinstance(content, str):
                raise _QueryFailure(f"garbage answer from the server (content is {type(content).__name__})")
            return obj
        raise _QueryFailure(f"gave up after {self.max_retries + 1} attempts: {last}")

    def _sleep(self, attempt: int, retry_after: str | None) -> None:
        if attempt >= self.max_retries:
            return
        delay = self.backoff_s * (2**attempt)
        try:
            if retry_after is not None:
                delay = max(delay, min(float(retry_after), 60.0))
        except ValueError:
            pass
        time.sleep(delay)

    # ------------------------------------------------------------------ one query

    def _payload(self, sampled: SampledVideo, images: list[tuple[str, bytes]], query: str, task: str) -> dict:
        items = [{"type": "image_url", "image_url": {"url": url}} for url, _ in images]
        question = self.style.question(query, sampled.info.duration_s, task)
        messages = self.style.messages([float(t) for t in sampled.timestamps], items, question)
        return {"model": self.model_name, "messages": messages, "max_tokens": self.max_new_tokens,
                "temperature": 0.0, "stream": False}

    def _cache_key(self, payload: dict, images: list[tuple[str, bytes]]) -> str:
        """Model, prompt text, frame bytes and generation settings; the API key is not part of it."""
        h = hashlib.sha256()
        text_only = [[c.get("text") if c.get("type") == "text" else "<image>" for c in m["content"]]
                     for m in payload["messages"]]
        h.update(json.dumps({"model": payload["model"], "messages": text_only, "max_tokens": payload["max_tokens"],
                             "temperature": payload["temperature"]}, sort_keys=True).encode())
        for _, data in images:
            h.update(hashlib.sha256(data).digest())
        return h.hexdigest()

    def _answer_text(self, payload: dict, images: list[tuple[str, bytes]]) -> str:
        key = self._cache_key(payload, images)
        path = self.cache_dir / key[:2] / f"{key}.json" if self.cache_dir else None
        if path is not None and path.is_file():
            try:
                cached = json.loads(path.read_text(encoding="utf-8"))
                with self.stats.lock:
                    self.stats.cache_hits += 1
                return str(cached["content"])
            except (ValueError, KeyError, OSError):
                log.warning("ignoring unreadable cache entry %s", path)
        obj = self._chat(payload)
        content = obj["choices"][0]["message"]["content"]
        usage = obj.get("usage") or {}
        with self.stats.lock:
            self.stats.prompt_tokens += int(usage.get("prompt_tokens") or 0)
            self.stats.completion_tokens += int(usage.get("completion_tokens") or 0)
        if path is not None:
            atomic_write_text(path, json.dumps({"model": self.model_name, "content": content, "usage": usage}))
        return content

    def _ground_one(self, sampled: SampledVideo, images: list[tuple[str, bytes]], query: str, task: str, qid: str
                    ) -> GroundingPrediction:
        try:
            text = self._answer_text(self._payload(sampled, images, query, task), images)
        except _QueryFailure as exc:
            with self.stats.lock:
                self.stats.errors += 1
            return GroundingPrediction(qid=qid, error=str(exc), extra={"backend": f"served:{self.model_name}"})
        processed = None
        if self.style.box_scale == "pixels" and self.spec.answer_frame_size is not None and len(sampled):
            # the server resizes the frames we send; its pixel answers refer to that size (default: the
            # released processor's pixel budget; set min_pixels / max_pixels when the server uses others)
            from stvg_plugin.models.families.qwen2_5_vl import PROCESSOR_MAX_PIXELS, PROCESSOR_MIN_PIXELS

            h, w = sampled.frames.shape[1:3]
            processed = self.spec.answer_frame_size(h, w, max_pixels=self.max_pixels or PROCESSOR_MAX_PIXELS,
                                                    min_pixels=self.min_pixels or PROCESSOR_MIN_PIXELS)
        return answer_to_prediction(text, sampled, qid, task=task, coord_hint=self.style.coord_hint(),
                                    processed_size=processed, backend=f"served:{self.model_name}")

    # ------------------------------------------------------------------ public API

    def ground(self, video: str | Path | SampledVideo, queries: Sequence[str], *, task: str = "stvg",
               qids: Sequence[str] | None = None) -> list[GroundingPrediction]:
        sampled = video if isinstance(video, SampledVideo) else sample_video(video, **self.sampling)
        qids = [str(i) for i in range(len(queries))] if qids is None else list(qids)
        images = [_image_data_url(f, self.image_format) for f in sampled.frames]
        with ThreadPoolExecutor(self.concurrency) as pool:
            futures = [pool.submit(self._ground_one, sampled, images, q, task, i) for q, i in zip(queries, qids)]
            return [f.result() for f in futures]

    def predict(self, queries: Sequence[GroundingQuery], progress: bool = True) -> Iterator[GroundingPrediction]:
        """Predictions in input order, grouped by video; at most ``concurrency`` requests in flight."""
        from stvg_plugin.util.progress import progress_bar

        groups: dict[str, list[GroundingQuery]] = {}
        for q in queries:
            groups.setdefault(q.video, []).append(q)
        bar = progress_bar(total=len(queries), desc="grounding (served)", unit="query", disable=not progress)
        loader = PrefetchLoader(list(groups), self._sample, num_workers=self.num_workers)
        pending: deque[Future] = deque()
        window = 2 * self.concurrency
        try:
            with ThreadPoolExecutor(self.concurrency) as pool:
                for video, sampled in loader:
                    group = groups[video]
                    if isinstance(sampled, VideoReadError):
                        done: Future = Future()
                        done.set_result([GroundingPrediction(qid=q.qid, error=str(sampled)) for q in group])
                        pending.append(done)
                    else:
                        images = [_image_data_url(f, self.image_format) for f in sampled.frames]
                        for q in group:
                            pending.append(pool.submit(self._ground_one, sampled, images, q.query, q.task, q.qid))
                    while len(pending) > window:
                        yield from self._drain(pending.popleft(), bar)
                while pending:
                    yield from self._drain(pending.popleft(), bar)
        finally:
            bar.close()

    @staticmethod
    def _drain(fut: Future, bar) -> Iterator[GroundingPrediction]:
        result = fut.result()
        for pred in result if isinstance(result, list) else [result]:
            bar.update(1)
            yield pred

    def _sample(self, video: str) -> SampledVideo:
        return sample_video(video, **self.sampling)

    def run_summary(self) -> dict[str, Any]:
        """Requests, cache hits, retries, errors, latency (s) and token counts of this run."""
        lat = np.asarray(self.stats.latencies_s, dtype=np.float64)
        return {
            "backend": "openai_compatible",
            "model_name": self.model_name,
            "base_url": self.base_url,
            "recipe": self.recipe,
            "requests": self.stats.requests,
            "cache_hits": self.stats.cache_hits,
            "retries": self.stats.retries,
            "errors": self.stats.errors,
            "latency_s": {
                "mean": float(lat.mean()) if lat.size else None,
                "p50": float(np.percentile(lat, 50)) if lat.size else None,
                "p95": float(np.percentile(lat, 95)) if lat.size else None,
            },
            "prompt_tokens": self.stats.prompt_tokens,
            "completion_tokens": self.stats.completion_tokens,
        }


_SERVED_KEYS = ("family", "style", "recipe", "api_key_env", "concurrency", "num_frames", "sample_fps", "max_frames",
                "frame_size", "max_pixels", "min_pixels", "max_new_tokens", "timeout_s", "connect_timeout_s",
                "max_retries", "backoff_s", "cache_dir", "num_workers", "image_format")


def load_served(spec: dict[str, Any]) -> ServedGrounder:
    """``{"type": "openai_compatible", "base_url": URL, "model_name": NAME, ...}``, checked against the server."""
    kwargs = {k: spec[k] for k in _SERVED_KEYS if spec.get(k) is not None}
    if isinstance(kwargs.get("frame_size"), list):
        kwargs["frame_size"] = tuple(kwargs["frame_size"])
    grounder = ServedGrounder(spec.get("base_url"), spec.get("model_name"), **kwargs)
    grounder.check_server()
    return grounder
