"""lmms-eval model registration (entry point group ``lmms_eval.models``).

Only string class paths: lmms-eval imports this module for every run, whatever the model, so it
must not pull torch or the model core in.
"""

from __future__ import annotations


def model_manifests() -> list:
    from lmms_eval.models.registry_v2 import ModelManifest

    return [
        ModelManifest(model_id="spacevllm", simple_class_path="lmms_tasks.models.SpaceVLLM"),
        ModelManifest(model_id="stvg_prompted", simple_class_path="lmms_tasks.models.StvgPrompted"),
    ]
