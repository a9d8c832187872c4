"""One model loader: predict, train, lmms-eval and FiftyOne all build their model through
:mod:`stvg_plugin.models.loading`, with one list of option keys per backend."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stvg_plugin.data import StvgError
from stvg_plugin.models import loading
from stvg_plugin.models.loading import ModelSpec, load_grounder, load_model


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny") / "ckpt"
    load_model(ModelSpec.from_config("spacevllm_tiny")).save_pretrained(folder)
    return folder


def test_spec_kind_comes_from_the_config_type() -> None:
    assert ModelSpec.from_config("spacevllm_tiny").kind == "spacevllm"
    assert ModelSpec.from_config({"type": "prompted", "tiny": True}).kind == "prompted"
    assert ModelSpec.from_config({"type": "openai_compatible"}).kind == "openai_compatible"
    assert ModelSpec.from_config({"type": "spacevllm", "preset": "spacevllm_tiny"}).kind == "spacevllm"
    with pytest.raises(StvgError, match="model kind"):
        ModelSpec("bogus", "spacevllm_tiny")


def test_pop_options_takes_only_the_backends_keys() -> None:
    args = {"num_frames": 4, "batch_size": 1, "trust_remote_code": True, "style": "qwen2_5_vl"}
    assert loading.pop_options("spacevllm", args) == {"num_frames": 4, "trust_remote_code": True}
    assert args == {"batch_size": 1, "style": "qwen2_5_vl"}
    assert loading.pop_options("prompted", args) == {"style": "qwen2_5_vl"} and args == {"batch_size": 1}


def test_train_and_predict_load_the_same_checkpoint_weights(tiny_checkpoint: Path) -> None:
    from stvg_plugin.training import build_model

    trained = build_model({"preset": "spacevllm_tiny", "num_frames": 3, "span_source": None}, tiny_checkpoint)
    served = load_grounder({"preset": "spacevllm_tiny", "num_frames": 3}, checkpoint=tiny_checkpoint).model
    a, b = trained.state_dict(), served.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # only the keys the caller set reach the checkpoint's config
    assert trained.config.num_frames == served.config.num_frames == 3


def test_no_weights_is_named_for_each_purpose() -> None:
    spec = ModelSpec.from_config({"preset": "spacevllm_tiny", "size": "large"})
    with pytest.raises(StvgError, match="has no weights: pass a checkpoint"):
        load_model(spec)
    with pytest.raises(StvgError, match="has no weights to start from"):
        load_model(spec, for_training=True)


@pytest.mark.parametrize("opted_in", [False, True])
def test_every_entry_point_goes_through_the_one_loader(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, opted_in: bool
) -> None:
    seen: list[tuple[ModelSpec, bool]] = []

    def fake_load_model(spec: ModelSpec, *, for_training: bool = False):
        seen.append((spec, for_training))
        raise RuntimeError("stop")

    def fake_load_prompted(spec: ModelSpec):
        seen.append((spec, False))
        raise RuntimeError("stop")

    monkeypatch.setattr(loading, "load_model", fake_load_model)
    monkeypatch.setattr(loading, "_load_prompted", fake_load_prompted)

    from stvg_plugin.training import build_model

    with pytest.raises(RuntimeError, match="stop"):  # stvg train
        build_model({"preset": "spacevllm_tiny", "type": "spacevllm", "num_frames": None}, tmp_path)
    assert seen[-1] == (ModelSpec("spacevllm", {"preset": "spacevllm_tiny"}, tmp_path), True)

    fo_io = pytest.importorskip("fiftyone_plugin.io")  # the FiftyOne operators
    with pytest.raises(RuntimeError, match="stop"):
        fo_io.load_model("prompted", checkpoint=str(tmp_path), num_frames=4, cache=False)
    assert seen[-1] == (ModelSpec("prompted", {"type": "prompted", "num_frames": 4}, str(tmp_path)), False)
    with pytest.raises(RuntimeError, match="stop"):
        fo_io.load_model("spacevllm_tiny", checkpoint=str(tmp_path), cache=False, trust_remote_code=opted_in)
    assert seen[-1][0].config == ({"preset": "spacevllm_tiny", "trust_remote_code": True} if opted_in else "spacevllm_tiny")

    lmms_models = pytest.importorskip("lmms_tasks.models")  # the lmms-eval models
    with pytest.raises(RuntimeError, match="stop"):
        lmms_models.StvgPrompted(pretrained=str(tmp_path), num_frames=4, recipe="x", batch_size=1)
    assert seen[-1][0] == ModelSpec("prompted", {"type": "prompted", "num_frames": 4, "recipe": "x"}, str(tmp_path))
    with pytest.raises(RuntimeError, match="stop"):
        lmms_models.SpaceVLLM(pretrained=str(tmp_path), num_frames=5, trust_remote_code=opted_in)
    assert seen[-1][0] == ModelSpec("spacevllm", {"num_frames": 5, "trust_remote_code": opted_in}, str(tmp_path))
    with pytest.raises(StvgError, match="unknown --model_args"):
        lmms_models.SpaceVLLM(pretrained=str(tmp_path), style="qwen2_5_vl")
