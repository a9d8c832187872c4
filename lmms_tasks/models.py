"""lmms-eval models over the stvg grounders: ``spacevllm`` (model core) and ``stvg_prompted`` (zero-shot VLM).

Both are thin: they read each request's doc (the unified record of an ``stvg_*`` task), hand the
queries to the grounder's ``predict``, which groups them by video, samples frames with the core's
video sampler (so spans and boxes map back to real frame indices and seconds) and encodes each
video once, and answer each request with ``json.dumps(GroundingPrediction.to_json())``, which
:func:`lmms_tasks.common.process_results` reads back. A video that cannot be read gives its queries
a prediction with ``error`` set; the run goes on.
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any

from lmms_eval.api.model import lmms

from lmms_tasks.common import query_from_doc
from stvg_plugin.data import GroundingPrediction, GroundingQuery, StvgError

log = logging.getLogger("stvg.lmms")

# keyword arguments lmms-eval adds to every model's --model_args
_LMMS_RUNTIME_ARGS = ("batch_size", "max_batch_size", "device")


class _StvgGrounderModel(lmms):
    """Shared request handling; subclasses build ``self.grounder`` (anything with ``predict``)."""

    def __init__(self, device: str | None = None, **kwargs: Any) -> None:
        super().__init__()
        for key in _LMMS_RUNTIME_ARGS:
            kwargs.pop(key, None)
        if kwargs:
            raise StvgError(f"{type(self).__name__}: unknown --model_args {sorted(kwargs)}")
        self._device = _resolve_device(device)
        self.grounder: Any = None
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            atexit.register(_destroy_process_group)

    @property
    def device(self) -> str:
        return self._device

    def _docs_to_queries(self, requests: list) -> list[GroundingQuery]:
        queries = []
        for req in requests:
            _context, _gen_kwargs, _doc_to_visual, doc_id, task, split = req.args
            doc = self.task_dict[task][split][doc_id]
            if "record" not in doc:
                raise StvgError(f"{type(self).__name__} runs only the stvg_* tasks; task {task!r} has no stvg record")
            queries.append(query_from_doc(doc))
        return queries

    def generate_until(self, requests: list) -> list[str]:
        queries = self._docs_to_queries(requests)
        # predict() keys its answers by qid; distinct tasks may reuse a qid, so each distinct
        # (video, query, qid) gets a private qid for the call - one call, each video encoded once.
        unique: dict[tuple[str, str, str, str], int] = {}
        for q in queries:
            unique.setdefault((q.video, q.query, q.qid, q.task), len(unique))
        batch = [dataclasses.replace(q, qid=str(unique[(q.video, q.query, q.qid, q.task)])) for q in queries]
        batch = list({q.qid: q for q in batch}.values())
        by_key: dict[str, GroundingPrediction] = {}
        for pred in self.grounder.predict(batch, progress=self.rank == 0):
            by_key[pred.qid] = pred
        answers = []
        for q in queries:
            pred = by_key.get(str(unique[(q.video, q.query, q.qid, q.task)]))
            if pred is None:
                pred = GroundingPrediction(qid=q.qid, error="the grounder returned no prediction")
            pred = dataclasses.replace(pred, qid=q.qid)
            if pred.error:
                log.warning("%s (%s): %s", q.qid, q.video, pred.error)
            answers.append(json.dumps(pred.to_json(), ensure_ascii=False))
        return answers

    def loglikelihood(self, requests: list) -> list:
        raise NotImplementedError(f"{type(self).__name__} only generates (stvg_* tasks use generate_until)")

    def generate_until_multi_round(self, requests: list) -> list:
        raise NotImplementedError(f"{type(self).__name__} does not support multi-round generation")


def _destroy_process_group() -> None:
    """lmms-eval starts a gloo group for data parallel runs but never ends it; ending it while the
    interpreter is still alive avoids a C++ ``terminate`` (exit -6) of a rank at shutdown."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _resolve_device(device: str | None) -> str:
    """``cuda`` under ``accelerate launch`` means this rank's GPU."""
    device = str(device or "cpu")
    if device == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


class SpaceVLLM(_StvgGrounderModel):
    """``--model spacevllm --model_args pretrained=DIR|PRESET[,num_frames=N,...]``.

    ``pretrained`` is a folder written by ``save_pretrained`` or a preset name (``spacevllm_tiny``: the
    seeded random tiny model, for smoke runs). Other keys are the model spec's runtime keys
    (``num_frames``, ``span_source``, ``relevance_threshold``, ``max_new_tokens``, ...) and, for a
    preset, ``backbone_path`` / ``dtype`` (the list: ``stvg_plugin.models.loading.SPACEVLLM_OPTION_KEYS``).
    """

    def __init__(self, pretrained: str = "spacevllm_tiny", preset: str | None = None, **kwargs: Any) -> None:
        from stvg_plugin.models import PRESETS, ModelSpec, load_grounder
        from stvg_plugin.models.loading import pop_options

        spec = pop_options("spacevllm", kwargs)
        super().__init__(**kwargs)
        path = Path(str(pretrained)).expanduser()
        if path.is_dir():
            if preset is not None:
                spec["preset"] = preset
            self.grounder = load_grounder(ModelSpec.from_config(spec, checkpoint=str(path), device=self.device))
        elif str(pretrained) in PRESETS:
            self.grounder = load_grounder(ModelSpec.from_config({"preset": str(pretrained), **spec}, device=self.device))
        else:
            raise StvgError(
                f"spacevllm: pretrained={pretrained} is neither a saved model folder nor a preset ({', '.join(PRESETS)})"
            )


class StvgPrompted(_StvgGrounderModel):
    """``--model stvg_prompted --model_args pretrained=DIR[,num_frames=N,max_new_tokens=M,...]``.

    ``DIR`` is a local checkpoint of a supported off-the-shelf video LLM (a family of
    ``stvg_plugin.models.families``: Qwen2.5-VL, Qwen3-VL, InternVL 3/3.5, LLaVA-OneVision / LLaVA-Video,
    picked from its ``model_type``), prompted with its family's grounding prompt (or ``recipe=NAME``)
    and read by the core parser. Its options: ``stvg_plugin.models.loading.PROMPTED_OPTION_KEYS``.
    """

    def __init__(self, pretrained: str, **kwargs: Any) -> None:
        from stvg_plugin.models import ModelSpec, load_grounder
        from stvg_plugin.models.loading import pop_options

        options = pop_options("prompted", kwargs)
        super().__init__(**kwargs)
        self.grounder = load_grounder(
            ModelSpec("prompted", {"type": "prompted", **options}, checkpoint=str(pretrained), device=self.device)
        )
