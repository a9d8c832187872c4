"""Build hook: ship the top-level ``conf/`` inside the distribution as the package ``stvg_plugin.conf``.

Why: ``conf/`` stays the single source of truth in the checkout (Hydra reads it directly there),
but an installed ``stvg`` (``pip install .``, a wheel) has no checkout. ``build_py`` copies every
config into ``<build>/stvg_plugin/conf/`` and adds an ``__init__.py`` so Hydra can read it as
``pkg://stvg_plugin.conf`` (see :func:`stvg_plugin.cli.config_dir`). Everything else is declared
in ``pyproject.toml``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

CONF_SOURCE = Path(__file__).resolve().parent / "conf"
CONF_PACKAGE = ("stvg_plugin", "conf")
CONF_INIT = '"""The Hydra configs of ``stvg``, copied from the checkout\'s ``conf/`` at build time."""\n'


class BuildPyWithConf(build_py):
    """``build_py`` that also copies ``conf/**/*.yaml`` into the built ``stvg_plugin/conf``."""

    def run(self) -> None:
        super().run()
        if not CONF_SOURCE.is_dir():  # building from an sdist that lacks conf/ would ship no configs
            raise FileNotFoundError(f"{CONF_SOURCE} is missing: the stvg configs cannot be packaged")
        target = Path(self.build_lib).joinpath(*CONF_PACKAGE)
        shutil.rmtree(target, ignore_errors=True)
        for source in sorted(CONF_SOURCE.rglob("*.yaml")):
            dest = target / source.relative_to(CONF_SOURCE)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest)
        (target / "__init__.py").write_text(CONF_INIT, encoding="utf-8")


setup(cmdclass={"build_py": BuildPyWithConf})
