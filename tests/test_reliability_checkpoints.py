"""Altered checkpoints and interrupted saves (issue 16, weaker items): one clear line, never a traceback.

* tampered ``model.safetensors`` (other tensor shapes, a huge or broken header, cut in half):
  ``stvg predict`` exits 2 with one line naming the checkpoint;
* ``allow_pickle=true`` on a folder holding both ``.bin`` and ``.safetensors`` loads the
  safetensors (the ``.bin`` here would run code if unpickled);
* a refused optimizer pickle in a training checkpoint stops ``resume`` with one line;
* ``final/`` is written aside and renamed: a failure while saving leaves no half folder.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from stvg_plugin.cli import main
from stvg_plugin.models import load_grounder


class _Payload:
    def __init__(self, sentinel: Path):
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return (open, (self.sentinel, "w"))


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from stvg_plugin.models.presets import build_tiny_model

    folder = tmp_path_factory.mktemp("ckpt") / "clean"
    build_tiny_model("spacevllm_tiny").save_pretrained(folder)
    return folder


def _other_shapes(p: Path) -> None:
    tensors = load_file(str(p))
    tensors[sorted(tensors)[3]] = torch.zeros(3, 3)
    save_file(tensors, str(p), metadata={"format": "pt"})


def _huge_header(p: Path) -> None:
    p.write_bytes(struct.pack("<Q", 1 << 62) + p.read_bytes()[8:])


def _broken_header(p: Path) -> None:
    data = p.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    p.write_bytes(data[:8] + b"{" * n + data[8 + n:])


def _truncated(p: Path) -> None:
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


def _cli(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("tamper, named", [(_other_shapes, ""), (_huge_header, "model.safetensors"),
                                           (_broken_header, "model.safetensors"), (_truncated, "model.safetensors")])
def test_tampered_safetensors_is_one_line(clean, tmp_path, tamper, named) -> None:
    folder = tmp_path / "ckpt"
    shutil.copytree(clean, folder)
    tamper(folder / "model.safetensors")
    ann = tmp_path / "a.jsonl"
    ann.write_text(json.dumps({"qid": "q", "video": "v.mp4", "query": "x"}) + "\n", encoding="utf-8")
    code, _, err = _cli(["predict", f"checkpoint={folder}", f"annotations={ann}", f"output_dir={tmp_path / 'out'}"])
    assert code == 2
    line = [x for x in err.splitlines() if x.startswith("stvg predict: error:")]
    assert len(line) == 1 and f"{folder / named}" in line[0] and "Traceback" not in err, err[-3000:]


def test_allow_pickle_prefers_safetensors(clean, tmp_path) -> None:
    folder, sentinel = tmp_path / "both", tmp_path / "pwned"
    shutil.copytree(clean, folder)
    torch.save({"weight": _Payload(sentinel)}, folder / "pytorch_model.bin")
    grounder = load_grounder({"preset": "spacevllm_tiny", "allow_pickle": True}, checkpoint=folder)
    assert not sentinel.exists()
    want = load_file(str(clean / "model.safetensors"))
    got = grounder.model.state_dict()
    assert all(torch.equal(got[k], v) for k, v in want.items() if k in got)


TINY_TRAIN = ["trainer=cpu_tiny", "trainer.grad_accum=1", "trainer.save_every=1"]


def test_refused_optimizer_pickle_on_resume_is_one_line(synth_dir, tmp_path) -> None:
    out, sentinel = tmp_path / "run", tmp_path / "pwned"
    ann = f"annotations={synth_dir / 'annotations.jsonl'}"
    assert _cli(["train", ann, f"output_dir={out}", *TINY_TRAIN, "trainer.max_steps=2"])[0] == 0
    state = sorted((out / "checkpoints").glob("step_*"))[-1] / "state"
    pickles = sorted(p for p in state.iterdir() if p.suffix in (".bin", ".pkl"))
    assert pickles, sorted(state.iterdir())
    for p in pickles:
        torch.save({"state": _Payload(sentinel)}, p)
    code, _, err = _cli(["train", ann, f"output_dir={out}", *TINY_TRAIN, "trainer.max_steps=3", "resume=auto"])
    assert not sentinel.exists()
    assert code == 2 and "Traceback" not in err, err[-3000:]
    assert f"{state}: cannot restore the optimizer/scheduler/RNG state" in err


def test_failed_final_save_leaves_no_half_folder(synth_dir, tmp_path, monkeypatch) -> None:
    from stvg_plugin.training.trainer import Trainer

    out = tmp_path / "run"
    ann = f"annotations={synth_dir / 'annotations.jsonl'}"
    real = Trainer.save_model

    def killed_while_saving(self, path):
        Path(path).mkdir(parents=True, exist_ok=True)
        (Path(path) / "config.json").write_text("{}")  # a half-written folder
        raise OSError("no space left on device (injected)")

    monkeypatch.setattr(Trainer, "save_model", killed_while_saving)
    with pytest.raises(SystemExit), contextlib.redirect_stderr(io.StringIO()):  # Hydra reports it, exit 1
        main(["train", ann, f"output_dir={out}", "trainer=cpu_tiny", "trainer.grad_accum=1", "trainer.max_steps=1"])
    assert not (out / "final").exists() and (out / ".tmp_final" / "config.json").is_file()
    monkeypatch.setattr(Trainer, "save_model", real)
    assert _cli(["train", ann, f"output_dir={out}", "trainer=cpu_tiny", "trainer.grad_accum=1",
                 "trainer.max_steps=1"])[0] == 0
    assert (out / "final" / "model.safetensors").is_file() and not (out / ".tmp_final").exists()
    load_grounder("spacevllm_tiny", checkpoint=out / "final")
