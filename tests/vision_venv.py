"""The side venv ``.venv-vision/`` that the tests needing torchvision or `transformers serve` run in.

Why a second venv: lmms-eval's stock ``qwen2_5_vl`` / ``qwen3_vl`` models (through ``qwen_vl_utils``)
and ``transformers serve`` (Qwen's video processor) need torchvision, and the only torchvision built
for our torch 2.13.0 (0.28.0) is built against the CUDA build of torch 2.13.0 (its ``_C.so`` links
``libc10_cuda.so``), so it does not import with the CPU torch of ``.venv/``. ``make vision-venv``
(a prerequisite of ``make test``) installs that torch stack, torchvision and the serving packages
(``requirements/vision.txt``) in ``.venv-vision/``, which sees everything else of ``.venv/`` through a
``.pth`` file; a CUDA torch runs on a machine without a GPU. These tests run it as a subprocess.

Outside ``make`` a missing side venv skips these tests, naming the command that builds it; under
``make test`` (``STVG_REQUIRE_VISION_VENV=1``) it fails them, so CI never skips them silently.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def vision_python() -> Path:
    """The side venv's python (``STVG_VISION_PYTHON`` overrides the path), or skip / fail as above."""
    path = Path(os.environ.get("STVG_VISION_PYTHON") or REPO / ".venv-vision" / "bin" / "python")
    if path.is_file():
        return path
    message = f"the side venv's python {path} is missing: run `make vision-venv` (see tests/vision_venv.py)"
    if os.environ.get("STVG_REQUIRE_VISION_VENV") == "1":
        pytest.fail(message)
    pytest.skip(message)


def vision_env(**extra: str) -> dict[str, str]:
    """Offline, one thread, and this checkout first on the path (so its stvg_plugin and lmms_tasks run)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STVG_")}
    env.update(HF_HUB_OFFLINE="1", HF_HUB_DISABLE_UPDATE_CHECK="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
    env.update(extra)
    return env
