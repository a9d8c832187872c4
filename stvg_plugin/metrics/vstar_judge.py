"""V-STaR's "what" judge: rate a candidate answer 0-3 against the GT answer with an LLM (``judge=``).

``eval.py`` asks Qwen2.5-72B-Instruct for one integer (0 no similarity ... 3 complete similarity), reads
``int(reply)`` and uses -1 when that fails; an answer is correct when the rating is >= 2. The judge here
sends the same instructions and scale (:data:`~stvg_plugin.metrics.vstar.VSTAR_JUDGE_SYSTEM_PROMPT`,
:data:`~stvg_plugin.metrics.vstar.VSTAR_JUDGE_USER_TEMPLATE`) to either backend:

* ``hf:<checkpoint dir>`` - a local causal LM through transformers (``local_files_only``, safetensors,
  never ``trust_remote_code``), greedy, up to 512 new tokens as the official;
* ``openai:<base url>#<model>`` - a served model behind an OpenAI-compatible ``/chat/completions``.

Ratings depend on the judge model: use the official one to reproduce the paper's accuracy. Without a
judge, ratings are read from a results file's ``VQA_score`` or the accuracy is passed in.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from pathlib import Path

from stvg_plugin.data import StvgError
from stvg_plugin.metrics.vstar import VSTAR_JUDGE_SYSTEM_PROMPT, VSTAR_JUDGE_USER_TEMPLATE, vstar_judge_score

Judge = Callable[[str, str, str], int]
MAX_NEW_TOKENS = 512  # eval.py's generate(max_new_tokens=512)


class JudgeError(StvgError, ValueError):
    """A judge specification that names no usable backend."""


def judge_messages(question: str, answer: str, candidate: str) -> list[dict[str, str]]:
    """The chat the judge sees: system instructions, then question / GT answer / candidate."""
    user = VSTAR_JUDGE_USER_TEMPLATE.format(question=question, answer=answer, candidate=candidate)
    return [{"role": "system", "content": VSTAR_JUDGE_SYSTEM_PROMPT}, {"role": "user", "content": user}]


def make_judge(spec: str) -> Judge:
    """``hf:<dir>`` or ``openai:<base url>#<model>`` -> ``judge(question, answer, candidate) -> rating``."""
    kind, _, target = str(spec).partition(":")
    if kind == "hf" and target:
        return _hf_judge(Path(target))
    if kind == "openai" and target:
        url, _, model = target.partition("#")
        return _served_judge(url.rstrip("/"), model)
    raise JudgeError(f"judge must be 'hf:<checkpoint dir>' or 'openai:<base url>#<model>', got {spec!r:.80}")


def _hf_judge(folder: Path) -> Judge:
    if not folder.is_dir():
        raise JudgeError(f"judge checkpoint {folder} is not a directory")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, use_safetensors=True)
    model.eval()

    def judge(question: str, answer: str, candidate: str) -> int:
        messages = judge_messages(question, answer, candidate)
        if getattr(tokenizer, "chat_template", None):
            text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:  # a checkpoint without a chat template: the two turns as plain text
            text = "\n".join(m["content"] for m in messages)
        inputs = tokenizer([text], return_tensors="pt")
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
        reply = tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        return vstar_judge_score(reply)

    return judge


def _served_judge(base_url: str, model: str, timeout: float = 120.0) -> Judge:
    def judge(question: str, answer: str, candidate: str) -> int:
        body = json.dumps({"model": model, "messages": judge_messages(question, answer, candidate),
                           "max_tokens": MAX_NEW_TOKENS, "temperature": 0}).encode()  # fmt: skip
        req = urllib.request.Request(f"{base_url}/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - the operator's own URL
            reply = json.loads(resp.read().decode("utf-8"))
        try:
            text = reply["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            text = None
        return vstar_judge_score(text)

    return judge
