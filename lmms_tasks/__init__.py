"""lmms-eval integration of stvg: the ``spacevllm`` / ``stvg_prompted`` models and the ``stvg_*`` tasks.

Models are found by the stock lmms-eval CLI through the ``lmms_eval.models`` entry point
(:mod:`lmms_tasks.registry`); tasks through ``--include_path`` pointing at :data:`TASKS_DIR`, which
``stvg lmms-eval`` (:mod:`lmms_tasks.cli`) adds by itself. See docs/LMMS_EVAL.md.
"""

from __future__ import annotations

from pathlib import Path

TASKS_DIR = str(Path(__file__).resolve().parent)

__all__ = ["TASKS_DIR"]
