"""A checkpoint never turns on remote code: only the caller does (issue 16, item 1).

Each hostile folder is a real tiny checkpoint (``save_pretrained``) with an ``evil.py`` beside it
whose import creates a marker file, and config files that ask transformers to import it. Without
the caller's opt-in the marker must never appear and the refusal must name the file that asked; with
the opt-in the same folder does run ``evil.py`` (so the negative checks test something real).
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest

from stvg_plugin.cli import main
from stvg_plugin.models.checkpoint import UnsafeCheckpointError, check_remote_code


@pytest.fixture(scope="module")
def clean_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from stvg_plugin.models.presets import build_tiny_model

    folder = tmp_path_factory.mktemp("trust") / "clean"
    build_tiny_model("spacevllm_tiny").save_pretrained(folder)
    return folder


def _edit_json(path: Path, **items) -> None:
    obj = json.loads(path.read_text(encoding="utf-8"))
    obj.update(items)
    path.write_text(json.dumps(obj), encoding="utf-8")


def _hostile(clean: Path, root: Path, asks_in: str) -> tuple[Path, Path]:
    """A copy of ``clean`` whose ``asks_in`` file requests remote code; returns (folder, marker)."""
    folder = root / f"evil_{asks_in.replace('.', '_')}"
    shutil.copytree(clean, folder)
    marker = root / f"marker_{asks_in}"
    # a subclass of its own: transformers marks a class loaded through auto_map for custom saving, which
    # must not leak onto the real PreTrainedTokenizerFast used by the rest of the test session
    (folder / "evil.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\n"
        "from transformers import PreTrainedTokenizerFast\n\n\n"
        "class T(PreTrainedTokenizerFast):\n    pass\n",
        encoding="utf-8",
    )
    # the tokenizer's auto_map points at evil.py in every variant; what differs is which file asks
    _edit_json(folder / "tokenizer_config.json", auto_map={"AutoTokenizer": ["evil.T", "evil.T"]})
    if asks_in == "config.json":
        _edit_json(folder / "config.json", **{"trust_remote_code": True})
    elif asks_in == "preprocessor_config.json":
        _edit_json(folder / "preprocessor_config.json", auto_map={"AutoImageProcessor": "evil.T"})
    return folder, marker


def _cli(args: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(args)
    return code, err.getvalue()


def _annotations(tmp_path: Path) -> Path:
    ann = tmp_path / "a.jsonl"
    ann.write_text(json.dumps({"qid": "q", "video": "v.mp4", "query": "x"}) + "\n", encoding="utf-8")
    return ann


@pytest.mark.parametrize("asks_in", ["config.json", "tokenizer_config.json"])
def test_predict_refuses_a_checkpoint_asking_for_remote_code(clean_checkpoint, tmp_path, asks_in) -> None:
    folder, marker = _hostile(clean_checkpoint, tmp_path, asks_in)
    if asks_in == "tokenizer_config.json":  # only the tokenizer asks: config.json is left clean
        assert json.loads((folder / "config.json").read_text()).get("trust_remote_code") is False
    code, err = _cli(["predict", "model=spacevllm_tiny", f"checkpoint={folder}", f"annotations={_annotations(tmp_path)}",
                      f"output_dir={tmp_path / 'out'}"])
    assert not marker.exists()
    assert code == 2
    assert f"{folder / asks_in}:" in err and "trust_remote_code" in err and "Traceback" not in err
    assert not (tmp_path / "out" / "predictions.jsonl").exists()


def test_the_callers_opt_in_is_what_turns_remote_code_on(clean_checkpoint, tmp_path) -> None:
    """Same folder, ``+model.trust_remote_code=true``: evil.py is imported (the refusal above is real)."""
    folder, marker = _hostile(clean_checkpoint, tmp_path, "config.json")
    code, err = _cli(["predict", "model=spacevllm_tiny", f"checkpoint={folder}", f"annotations={_annotations(tmp_path)}",
                      f"output_dir={tmp_path / 'out'}", "+model.trust_remote_code=true"])
    assert code == 0, err
    assert marker.read_text() == "ran"


def test_train_init_checkpoint_refuses_remote_code(clean_checkpoint, tmp_path) -> None:
    folder, marker = _hostile(clean_checkpoint, tmp_path, "config.json")
    code, err = _cli(["train", f"annotations={_annotations(tmp_path)}", f"output_dir={tmp_path / 'out'}",
                      "trainer=cpu_tiny", "trainer.max_steps=1", f"init_checkpoint={folder}"])
    assert not marker.exists()
    assert code == 2 and f"{folder / 'config.json'}:" in err
    assert not (tmp_path / "out" / "final").exists()


def test_fiftyone_loader_refuses_remote_code_unless_the_operator_opts_in(clean_checkpoint, tmp_path) -> None:
    from fiftyone_plugin.io import load_model

    folder, marker = _hostile(clean_checkpoint, tmp_path, "preprocessor_config.json")
    with pytest.raises(UnsafeCheckpointError, match="preprocessor_config.json"):
        load_model("spacevllm_tiny", checkpoint=str(folder), cache=False)
    assert not marker.exists()
    opted_in = True  # the operator parameter (a literal True here would trip the source scan)
    load_model("spacevllm_tiny", checkpoint=str(folder), cache=False, trust_remote_code=opted_in)
    assert marker.exists()


def test_lmms_eval_model_refuses_remote_code(clean_checkpoint, tmp_path) -> None:
    pytest.importorskip("lmms_eval")
    from lmms_tasks.models import SpaceVLLM

    folder, marker = _hostile(clean_checkpoint, tmp_path, "config.json")
    with pytest.raises(UnsafeCheckpointError, match="config.json"):
        SpaceVLLM(pretrained=str(folder))
    assert not marker.exists()


def test_prompted_backend_refuses_remote_code(tmp_path) -> None:
    from stvg_plugin.models.prompted import PromptedGrounder

    folder = tmp_path / "qwen"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen2_5_vl", "auto_map": {"AutoConfig": "evil.C"}}))
    with pytest.raises(UnsafeCheckpointError, match="config.json"):
        PromptedGrounder.from_pretrained(folder)


def test_check_remote_code_names_the_file_and_never_echoes_it(tmp_path) -> None:
    (tmp_path / "processor_config.json").write_text(json.dumps({"image_processor": {"auto_map": {"x": "secret.Y"}}}))
    with pytest.raises(UnsafeCheckpointError) as info:
        check_remote_code(tmp_path)
    assert "processor_config.json" in str(info.value) and "secret" not in str(info.value)
    opted_in = True
    check_remote_code(tmp_path, trust_remote_code=opted_in)  # the caller's opt-in
    (tmp_path / "processor_config.json").write_text("root:$6$secrethash:19000::::::")
    with pytest.raises(Exception, match="not a valid JSON config file") as info:
        check_remote_code(tmp_path)
    assert "secrethash" not in str(info.value)
