"""Untrusted files never run code: safetensors only (pickle needs an opt-in), no remote code, no eval/shell.

The pickle checks use a real payload: a ``pytorch_model.bin`` whose unpickling would create a
sentinel file. Refusing it (or loading it with ``weights_only``) must leave no sentinel behind.
The last test scans every Python file of the repository (``.venv`` and other hidden folders
excluded) with ``ast`` and names ``file:line`` of any ``shell=True``, builtin ``eval``/``exec``,
``pickle.load(s)``, ``yaml.load`` without a safe loader, ``torch.load`` without ``weights_only=True``,
``np.load(allow_pickle=True)`` or a literal ``trust_remote_code=True``.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stvg_plugin.cli import main
from stvg_plugin.models import load_grounder
from stvg_plugin.models.checkpoint import UnsafeCheckpointError

REPO = Path(__file__).resolve().parent.parent


class _Payload:
    """Unpickling this creates ``self.sentinel`` (stands for any code an attacker would run)."""

    def __init__(self, sentinel: Path):
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return (open, (self.sentinel, "w"))


def _pickle_only_checkpoint(folder: Path, sentinel: Path, with_config: bool) -> Path:
    folder.mkdir(parents=True)
    if with_config:  # a complete saved model whose weights were swapped for the payload
        from stvg_plugin.models.presets import build_tiny_model

        build_tiny_model("spacevllm_tiny").save_pretrained(folder)
        (folder / "model.safetensors").unlink()
    torch.save({"weight": _Payload(sentinel)}, folder / "pytorch_model.bin")
    return folder


def test_pickle_only_checkpoint_is_refused_and_never_unpickled(tmp_path: Path) -> None:
    sentinel = tmp_path / "pwned"
    ckpt = _pickle_only_checkpoint(tmp_path / "ckpt", sentinel, with_config=False)
    with pytest.raises(UnsafeCheckpointError, match="pytorch_model.bin") as info:
        load_grounder("spacevllm_tiny", checkpoint=ckpt)
    assert "allow_pickle" in str(info.value)  # the message says how to opt in
    assert not sentinel.exists()


def test_predict_with_pickle_checkpoint_fails_cleanly_naming_the_file(tmp_path: Path) -> None:
    sentinel = tmp_path / "pwned"
    ckpt = _pickle_only_checkpoint(tmp_path / "ckpt", sentinel, with_config=False)
    ann = tmp_path / "a.jsonl"
    ann.write_text(json.dumps({"qid": "q", "video": "v.mp4", "query": "x"}) + "\n", encoding="utf-8")
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["predict", f"annotations={ann}", f"checkpoint={ckpt}", f"output_dir={tmp_path / 'out'}"])
    assert code == 2 and "pytorch_model.bin" in err.getvalue() and "allow_pickle" in err.getvalue()
    assert not sentinel.exists() and not (tmp_path / "out" / "predictions.jsonl").exists()


def test_checkpoint_without_config_is_refused_before_building_a_model(tmp_path: Path) -> None:
    """Without ``config.json`` transformers would build the default (7B) model: gigabytes, then an OOM kill."""
    from safetensors.torch import save_file

    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    save_file({"x": torch.zeros(1)}, str(ckpt / "model.safetensors"))
    ann = tmp_path / "a.jsonl"
    ann.write_text(json.dumps({"qid": "q", "video": "v.mp4", "query": "x"}) + "\n", encoding="utf-8")
    limit = "import resource; resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30)); "
    proc = subprocess.run(
        [sys.executable, "-c", limit + "import sys; from stvg_plugin.cli import main; sys.exit(main(sys.argv[1:]))",
         "predict", f"annotations={ann}", f"checkpoint={ckpt}", f"output_dir={tmp_path / 'out'}"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "no config.json" in proc.stderr and str(ckpt) in proc.stderr


def test_allow_pickle_still_loads_weights_only(tmp_path: Path) -> None:
    """Even opted in, pickle weights go through ``torch.load(weights_only=True)``: the payload is refused."""
    sentinel = tmp_path / "pwned"
    ckpt = _pickle_only_checkpoint(tmp_path / "ckpt", sentinel, with_config=True)
    with pytest.raises(Exception) as info:  # noqa: B017 - transformers' own error type
        load_grounder({"preset": "spacevllm_tiny", "allow_pickle": True}, checkpoint=ckpt)
    assert "weights_only" in str(info.value) or "Unpickl" in type(info.value).__name__ + str(info.value)
    assert not sentinel.exists()


def test_prompted_backend_refuses_pickle_only_weights(tmp_path: Path) -> None:
    from stvg_plugin.models.prompted import PromptedGrounder

    sentinel = tmp_path / "pwned"
    ckpt = _pickle_only_checkpoint(tmp_path / "qwen", sentinel, with_config=False)
    (ckpt / "config.json").write_text(json.dumps({"model_type": "qwen2_5_vl"}), encoding="utf-8")
    with pytest.raises(UnsafeCheckpointError, match="pytorch_model.bin"):
        PromptedGrounder.from_pretrained(ckpt)
    assert not sentinel.exists()


# --------------------------------------------------------------------------- remote code


class _Stop(Exception):
    pass


def test_trust_remote_code_is_off_unless_set(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from stvg_plugin.models import presets
    from stvg_plugin.models.backbones import get_backbone
    from stvg_plugin.models.configuration_spacevllm import SpaceVLLMConfig

    assert SpaceVLLMConfig().trust_remote_code is False
    calls: list[dict] = []

    def record(*args, **kwargs):
        calls.append(kwargs)
        raise _Stop

    class _StubVLM:
        from_pretrained = staticmethod(record)

    monkeypatch.setattr(presets.AutoConfig, "from_pretrained", record)
    monkeypatch.setattr(get_backbone("llava_onevision"), "vlm_class", _StubVLM)
    for spec, expected in (({}, False), ({"trust_remote_code": True}, True)):
        full = {"preset": "spacevllm_7b", "backbone_path": str(tmp_path), **spec}
        for build in (presets.build_config, presets.build_from_backbone):
            calls.clear()
            with pytest.raises(_Stop):
                build(presets.resolve_spec(full) if build is presets.build_config else full)
            assert calls[-1]["trust_remote_code"] is expected, (build.__name__, spec)
            assert calls[-1]["local_files_only"] is True
    assert calls[-1].get("use_safetensors") is True  # the base VLM's weights: safetensors only


# --------------------------------------------------------------------------- source scan


def _name(node: ast.AST) -> str:
    """Dotted name of a call target (``torch.load``, ``yaml.load``, ``eval``), else ''."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def _kw(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_true(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def _safe_loader_classes(tree: ast.AST) -> set[str]:
    """Classes of this file derived from a yaml ``SafeLoader``/``CSafeLoader``."""
    return {
        n.name for n in ast.walk(tree)
        if isinstance(n, ast.ClassDef) and any(_name(b).endswith("SafeLoader") for b in n.bases)
    }


def _problems(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    safe_loaders = _safe_loader_classes(tree)
    rel = path.relative_to(REPO)
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _name(node.func)
        short = name.rsplit(".", 1)[-1]
        where = f"{rel}:{node.lineno}"
        shell = _kw(node, "shell")
        if shell is not None and not (isinstance(shell, ast.Constant) and shell.value is False):
            out.append(f"{where}: shell={ast.unparse(shell)}")
        if name in ("eval", "exec", "builtins.eval", "builtins.exec"):
            out.append(f"{where}: builtin {name}()")
        if name in ("os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput"):
            out.append(f"{where}: {name}() runs a shell")
        if short in ("load", "loads", "Unpickler") and name.split(".")[0] in ("pickle", "cPickle", "dill", "_pickle"):
            out.append(f"{where}: {name}()")
        if name in ("pd.read_pickle", "pandas.read_pickle", "joblib.load", "marshal.load", "marshal.loads"):
            out.append(f"{where}: {name}()")
        if name in ("yaml.unsafe_load", "yaml.full_load"):
            out.append(f"{where}: {name}()")
        if name == "yaml.load":
            loader = _kw(node, "Loader") or (node.args[1] if len(node.args) > 1 else None)
            loader_name = _name(loader) if loader is not None else ""
            if not (loader_name.endswith(("SafeLoader", "CSafeLoader")) or loader_name in safe_loaders):
                out.append(f"{where}: yaml.load without a SafeLoader")
        if name in ("torch.load", "torch.serialization.load") and not _is_true(_kw(node, "weights_only")):
            out.append(f"{where}: {name}() without weights_only=True")
        if name in ("np.load", "numpy.load") and _kw(node, "allow_pickle") is not None:
            if not (isinstance(_kw(node, "allow_pickle"), ast.Constant) and _kw(node, "allow_pickle").value is False):
                out.append(f"{where}: {name}(allow_pickle=...)")
        if _is_true(_kw(node, "trust_remote_code")):
            out.append(f"{where}: trust_remote_code=True")
    return out


def _python_files() -> list[Path]:
    skip = {"node_modules", "build", "dist", "__pycache__"}
    files = []
    for folder, dirs, names in os.walk(REPO):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in skip]  # .venv, .git, .hydra ...
        files.extend(Path(folder) / n for n in names if n.endswith(".py"))
    return files


def test_scanner_catches_each_pattern(tmp_path: Path) -> None:
    bad = REPO / "tests" / f".scan_probe_{id(tmp_path)}.py"  # hidden name: never collected, never scanned
    bad.write_text(
        "import pickle, subprocess, torch, yaml, os\n"
        "subprocess.run('ls', shell=True)\n"
        "eval('1')\n"
        "exec('x = 1')\n"
        "pickle.loads(b'')\n"
        "yaml.load('a: 1')\n"
        "yaml.load('a: 1', Loader=yaml.SafeLoader)\n"
        "torch.load('f')\n"
        "torch.load('f', weights_only=True)\n"
        "os.system('ls')\n"
        "m.from_pretrained('p', trust_remote_code=True)\n"
        "model.eval()\n"
        "ast.literal_eval('1')\n",
        encoding="utf-8",
    )
    try:
        found = [p.split(": ", 1)[0].rsplit(":", 1)[1] for p in _problems(bad)]
    finally:
        bad.unlink()
    assert found == ["2", "3", "4", "5", "6", "8", "10", "11"]


def test_no_foreign_code_execution_anywhere_in_the_source() -> None:
    files = _python_files()
    assert len(files) > 20 and not any(".venv" in p.parts for p in files)
    problems = [msg for path in files for msg in _problems(path)]
    assert not problems, "unsafe calls:\n" + "\n".join(problems)
