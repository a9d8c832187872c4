"""``stvg`` argument errors: one line naming the key plus the usage line, exit 2, no traceback; per-command help."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stvg_plugin.cli import COMMANDS, main
from stvg_plugin.configs import command_help, config_keys

REPO = Path(__file__).resolve().parent.parent


def _stvg(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "stvg_plugin.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("command", ["predict", "evaluate", "train", "report"])
def test_missing_output_dir_names_the_key_and_usage(command: str, tmp_path: Path) -> None:
    res = _stvg(command, "annotations=a.jsonl", "predictions=p.jsonl" if command in ("evaluate", "report") else
                "benchmark=unified", cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert lines[0].startswith(f"stvg {command}: error: missing mandatory key output_dir"), res.stderr
    assert lines[1].startswith(f"usage: stvg {command} "), res.stderr
    assert "Traceback" not in res.stderr and "Hydra" not in res.stderr
    assert len(lines) == 2


def test_unknown_key_and_group_option_are_one_line(tmp_path: Path, capsys) -> None:
    assert main(["evaluate", "no_such_key=1", "output_dir=x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "no_such_key" in err[0] and err[1].startswith("usage: stvg evaluate")
    assert main(["predict", "model=no_such_model", "annotations=a", "output_dir=x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "model/no_such_model" in err[0] and "spacevllm_tiny" in err[0], err
    assert len(err) == 2


@pytest.mark.parametrize("command", list(COMMANDS))
def test_help_lists_each_key_once_without_hydra_preamble(command: str, capsys) -> None:
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: stvg {command}")
    assert "powered by Hydra" not in out
    key_lines = [line.split()[0] for line in out.splitlines() if line.startswith("  ") and "=" in line.split()[0]]
    names = [k.split("=")[0] for k in key_lines]
    assert len(names) == len(set(names)), f"duplicate keys in help: {names}"
    assert "output_dir" in names


def test_help_takes_descriptions_from_config_comments() -> None:
    text = "# header of the file\nfoo: 1\n# what bar is\nbar: x\nnested:\n  a: null  # inline help\n"
    keys, groups, is_global = config_keys(text)
    assert [(k.name, k.default, k.help) for k in keys] == [
        ("foo", "1", ""), ("bar", "x", "what bar is"), ("nested.a", "null", "inline help")]
    assert groups == [] and not is_global
    help_text = command_help("predict")
    assert "num_frames=null" in help_text and help_text.count("num_frames=") == 1
    for line in help_text.splitlines():
        if line.startswith("  annotations=") or line.startswith("  output_dir="):
            assert len(line.split()) > 1, f"undocumented key: {line!r}"


def test_unified_jsonl_given_to_a_native_benchmark_suggests_unified(synth_dir: Path, tmp_path: Path, capsys) -> None:
    ann = synth_dir / "annotations.jsonl"
    preds = tmp_path / "p.jsonl"
    preds.write_text("")
    for bench in ("hcstvg_v1", "vstar", "charades_sta"):
        assert main(["evaluate", f"benchmark={bench}", f"annotations={ann}", f"predictions={preds}",
                     f"output_dir={tmp_path / bench}"]) == 2
        err = capsys.readouterr().err
        assert "pass benchmark=unified" in err, (bench, err)


def test_native_file_given_as_unified_suggests_the_benchmark(synth_dir: Path, tmp_path: Path, capsys) -> None:
    preds = tmp_path / "p.jsonl"
    preds.write_text("")
    assert main(["evaluate", "benchmark=unified", f"annotations={synth_dir / 'hcstvg.json'}", f"predictions={preds}",
                 f"output_dir={tmp_path / 'o'}"]) == 2
    assert "pass benchmark=hcstvg_v1 or benchmark=hcstvg_v2" in capsys.readouterr().err
    charades = tmp_path / "charades.txt"
    charades.write_text("vid1 1.0 2.5##a person opens a door\n")
    assert main(["evaluate", "benchmark=unified", f"annotations={charades}", f"predictions={preds}",
                 f"output_dir={tmp_path / 'o2'}"]) == 2
    assert "pass benchmark=charades_sta" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["predict", "train", "report"])
def test_path_errors_come_before_heavy_imports(command: str, tmp_path: Path) -> None:
    """A missing annotation file is reported before torch/transformers/matplotlib are imported."""
    probe = (
        "import sys, json; from stvg_plugin.cli import main; code = main(sys.argv[1:]); "
        "print(json.dumps({'code': code, 'heavy': sorted(m for m in ('torch', 'transformers', 'matplotlib') "
        "if m in sys.modules)}))"
    )
    args = [command, f"annotations={tmp_path / 'missing.jsonl'}", f"output_dir={tmp_path / 'out'}"]
    if command == "report":
        preds = tmp_path / "p.jsonl"
        preds.write_text("")
        args.append(f"predictions={preds}")
    res = subprocess.run([sys.executable, "-c", probe, *args], cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    result = json.loads(res.stdout.strip().splitlines()[-1])
    assert result["code"] == 2
    assert "annotations=" in res.stderr and "does not exist" in res.stderr
    assert result["heavy"] == [], f"imported before the path check: {result['heavy']}"
