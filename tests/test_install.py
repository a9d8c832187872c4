"""A real install: build the wheel, install it into a fresh venv, run ``stvg`` from a directory outside the checkout.

The venv gets the wheel alone (``--no-deps --no-index``); the project's pinned dependencies are made
visible through a ``.pth`` line naming the test interpreter's site-packages, so nothing is downloaded
and the test takes seconds. A ``.pth`` path entry does not process that directory's own ``.pth``
files, so the checkout's editable install cannot leak in: the assertions check where
``stvg_plugin`` and its configs were loaded from.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SKIP_DIRS = {".git", ".venv", "build", "dist", "outputs", "multirun", "__pycache__", ".pytest_cache", ".ruff_cache",
             ".hypothesis", ".stvg_mongo"}


def _copy_source(dest: Path) -> Path:
    """The checkout without its venv and build leftovers (building in place would write into it)."""
    def ignore(folder: str, names: list[str]) -> set[str]:
        return {n for n in names if n in SKIP_DIRS or n.endswith(".egg-info")}
    shutil.copytree(REPO, dest, ignore=ignore, symlinks=True)
    return dest


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{' '.join(map(str, cmd))} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}"
    return res


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A venv holding only the stvg wheel, plus the paths and environment to run it."""
    root = tmp_path_factory.mktemp("install")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "STVG_CONF_DIR", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    source = _copy_source(root / "src")
    wheels = root / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
          "-w", str(wheels), str(source)], cwd=root, env=env)
    (wheel,) = wheels.glob("stvg-*.whl")
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=root, env=env)
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index",
          str(wheel)], cwd=root, env=env)
    purelib = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        cwd=root, env=env).stdout.strip())
    deps = [sysconfig.get_paths()["purelib"], *site.getsitepackages()]
    (purelib / "_stvg_test_deps.pth").write_text("\n".join(dict.fromkeys(deps)) + "\n")
    shutil.rmtree(source)  # the installed package must not need its source tree
    work = root / "elsewhere"
    work.mkdir()
    return {"venv": venv, "python": python, "stvg": venv / "bin" / "stvg", "purelib": purelib, "env": env,
            "work": work, "wheel": wheel}


def test_wheel_ships_configs_tasks_and_plugin(installed: dict) -> None:
    import zipfile

    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    checkout_confs = {f"stvg_plugin/conf/{p.relative_to(REPO / 'conf').as_posix()}" for p in (REPO / "conf").rglob("*.yaml")}
    assert checkout_confs and checkout_confs <= names, sorted(checkout_confs - names)
    assert "stvg_plugin/conf/__init__.py" in names
    assert "fiftyone_plugin/fiftyone.yml" in names
    assert "lmms_tasks/_default_template_stvg_yaml" in names
    task_yamls = {f"lmms_tasks/{p.relative_to(REPO / 'lmms_tasks').as_posix()}" for p in (REPO / "lmms_tasks").rglob("*.yaml")}
    assert task_yamls and task_yamls <= names


def test_installed_stvg_runs_outside_the_checkout(installed: dict) -> None:
    env, work = installed["env"], installed["work"]
    where = _run([str(installed["python"]), "-c",
                  "import stvg_plugin, lmms_tasks; from stvg_plugin.configs import config_source;"
                  "print(stvg_plugin.__file__); print(lmms_tasks.TASKS_DIR); print(config_source())"],
                 cwd=work, env=env).stdout.splitlines()
    assert Path(where[0]).is_relative_to(installed["purelib"]), where
    assert Path(where[1]).is_relative_to(installed["purelib"]), where
    assert where[2] == "pkg://stvg_plugin.conf"

    out = work / "synth"
    _run([str(installed["stvg"]), "synth", f"output_dir={out}", "num_videos=2", "seed=0"], cwd=work, env=env)
    annotations = out / "annotations.jsonl"
    rows = [json.loads(line) for line in annotations.read_text().splitlines()]
    assert len({r["video"] for r in rows}) == 2
    assert (out / ".hydra" / "config.yaml").is_file()

    preds = work / "perfect.jsonl"
    preds.write_text("".join(json.dumps({"qid": r["qid"], "span_frames": r["span_frames"], "boxes": r["boxes"]}) + "\n"
                             for r in rows))
    _run([str(installed["stvg"]), "evaluate", "benchmark=unified", f"annotations={annotations}",
          f"predictions={preds}", f"output_dir={work / 'eval'}"], cwd=work, env=env)
    summary = json.loads((work / "eval" / "summary.json").read_text())
    assert summary["num_queries"] == len(rows)
    assert summary["m_vIoU"] == pytest.approx(1.0)

    help_text = _run([str(installed["stvg"]), "predict", "--help"], cwd=work, env=env).stdout
    assert "annotations=???" in help_text and "model=spacevllm_tiny" in help_text


def test_fiftyone_plugin_installs_from_the_package(installed: dict) -> None:
    env, work = installed["env"], installed["work"]
    plugins = work / "plugins"
    _run([str(installed["python"]), "-m", "fiftyone_plugin.install", "--plugins-dir", str(plugins)], cwd=work, env=env)
    entry = plugins / "stvg-grounding"
    assert entry.is_symlink() and entry.resolve().is_relative_to(installed["purelib"].resolve())
    assert (entry / "fiftyone.yml").is_file()
    # a second run is a no-op; a foreign entry is kept unless --force
    _run([str(installed["python"]), "-m", "fiftyone_plugin.install", "--plugins-dir", str(plugins)], cwd=work, env=env)
    copy_dir = work / "plugins_copy"
    (copy_dir / "stvg-grounding").mkdir(parents=True)
    res = subprocess.run([str(installed["python"]), "-m", "fiftyone_plugin.install", "--plugins-dir", str(copy_dir),
                          "--copy"], cwd=work, env=env, capture_output=True, text=True)
    assert res.returncode == 2 and "--force" in res.stderr
    _run([str(installed["python"]), "-m", "fiftyone_plugin.install", "--plugins-dir", str(copy_dir), "--copy",
          "--force"], cwd=work, env=env)
    assert (copy_dir / "stvg-grounding" / "fiftyone.yml").is_file()
    assert not (copy_dir / "stvg-grounding").is_symlink()
