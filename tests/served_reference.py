"""A MINIMAL LOCAL OpenAI-compatible chat-completions server for tests -- a stand-in, not `transformers serve`.

The real server is tested in test_served_transformers_serve.py (`transformers serve` in the side venv
``.venv-vision/``, see tests/vision_venv.py). This stand-in stays for what a real server cannot be made
to do on demand: answer 429 / 503, garbage, slow answers, or echo the API key, for the retry, error and
key tests of test_served.py; and it runs in the main venv (no torchvision, no FastAPI needed).

This server does what such a server does for one model, with the standard library: ``GET
/v1/models``, ``POST /v1/chat/completions`` (non-streaming) with ``image_url`` data-URL content,
the checkpoint's chat template through the family's own processor, greedy ``generate`` and a
``usage`` block. It binds 127.0.0.1 on a free port, checks a Bearer key, counts requests, and can
inject faults (HTTP statuses, garbage bodies, slow answers) for the retry and error tests.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import torch


class ReferenceServer:
    def __init__(self, checkpoint: str | Path, model_name: str = "tiny", api_key: str | None = "sk-test-123"):
        from stvg_plugin.models.prompted import PromptedGrounder

        self.grounder = PromptedGrounder.from_pretrained(checkpoint, reuse_video_cache=False, num_workers=0)
        self.model_name = model_name
        self.api_key = api_key
        self.requests = 0
        self.faults: list[Any] = []  # consumed one per chat request: int status, "garbage", ("sleep", s)
        self.lock = threading.Lock()
        self.model_lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> ReferenceServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)

    def complete(self, payload: dict) -> dict:
        """Greedy completion of an OpenAI chat request with the checkpoint's own processor and template."""
        from PIL import Image

        g = self.grounder
        images, messages = [], []
        for m in payload["messages"]:
            content = []
            for item in m["content"]:
                if item["type"] == "image_url":
                    data = base64.b64decode(item["image_url"]["url"].split(",", 1)[1])
                    images.append(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
                    content.append({"type": "image"})
                else:
                    content.append(item)
            messages.append({"role": m["role"], "content": content})
        prompt = g.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        inputs = g.processor(text=[prompt], images=images, return_tensors="pt")
        with self.model_lock, torch.inference_mode():
            out = g.model.generate(**inputs, max_new_tokens=int(payload.get("max_tokens", 16)), do_sample=False,
                                   eos_token_id=g._end_ids, pad_token_id=g._end_ids[-1], suppress_tokens=g._suppress_ids)
        new = out[0, inputs["input_ids"].shape[1]:]
        text = g.tokenizer.decode(new, skip_special_tokens=False)
        for marker in ("<|im_end|>", "<|endoftext|>"):
            text = text.replace(marker, "")
        return {"id": "cmpl-1", "object": "chat.completion", "model": self.model_name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text.strip()},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": int(inputs["input_ids"].shape[1]), "completion_tokens": int(new.shape[0]),
                          "total_tokens": int(inputs["input_ids"].shape[1] + new.shape[0])}}

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def _send(self, status: int, body: bytes, headers: dict | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _authorised(self) -> bool:
                if server.api_key and self.headers.get("Authorization") != f"Bearer {server.api_key}":
                    self._send(401, b'{"error": {"message": "invalid api key"}}')
                    return False
                return True

            def do_GET(self) -> None:
                if not self._authorised():
                    return
                if self.path.rstrip("/") == "/v1/models":
                    self._send(200, json.dumps({"object": "list", "data": [{"id": server.model_name}]}).encode())
                else:
                    self._send(404, b'{"error": "not found"}')

            def do_POST(self) -> None:
                payload = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                if not self._authorised():
                    return
                with server.lock:
                    server.requests += 1
                    fault = server.faults.pop(0) if server.faults else None
                if isinstance(fault, tuple) and fault[0] == "sleep":
                    time.sleep(fault[1])
                    fault = None
                if isinstance(fault, int):
                    self._send(fault, json.dumps({"error": {"message": f"injected {fault}"}}).encode(),
                               {"Retry-After": "0"} if fault == 429 else None)
                    return
                if fault == "echo_key":  # a careless server quoting the request's credentials back
                    self._send(400, json.dumps({"error": f"bad request from {self.headers.get('Authorization')}"})
                               .encode())
                    return
                if fault == "garbage":
                    self._send(200, b"<html>502 bad gateway</html>")
                    return
                self._send(200, json.dumps(server.complete(payload)).encode())

        return Handler
