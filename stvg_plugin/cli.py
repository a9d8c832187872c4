"""The ``stvg`` command: one entry point, one Hydra config per subcommand.

``stvg <command> [key=value ...]`` composes ``conf/<command>.yaml`` with the overrides, runs the
command with the run directory set to ``output_dir`` (Hydra saves the composed config under
``output_dir/.hydra/`` so every run is reproducible), and exits non-zero with a one-line message
on the project's own errors. ``stvg lmms-eval ...`` is not a Hydra command: it forwards to the
lmms-eval CLI with this project's tasks on the include path and a real exit status.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig

from stvg_plugin.configs import command_help, compose_errors, config_source, usage_line
from stvg_plugin.data import StvgError
from stvg_plugin.util.threads import set_openmp_env

log = logging.getLogger("stvg")

COMMANDS: dict[str, str] = {
    "synth": "stvg_plugin.commands.synth:run",
    "evaluate": "stvg_plugin.commands.evaluate:run",
    "predict": "stvg_plugin.commands.predict:run",
    "train": "stvg_plugin.commands.train:run",
    "report": "stvg_plugin.commands.report:run",
    "demo": "stvg_plugin.commands.demo:run",
}

USAGE = """usage: stvg <command> [key=value ...]

commands:
  synth      write a synthetic STVG dataset (real MP4s + annotations)   output_dir=DIR num_videos=N seed=S
  evaluate   score predictions against a benchmark                       benchmark=... annotations=PATH predictions=PATH output_dir=DIR [protocol=...]
  predict    run a grounding model over annotations                      model=NAME [checkpoint=PATH] annotations=PATH output_dir=DIR
  train      fine-tune the model core                                    model=NAME annotations=PATH output_dir=DIR
  report     plots and rendered tubes for a scored run                   annotations=PATH predictions=PATH output_dir=DIR
  demo       the whole loop on the embedded synthetic default
  lmms-eval  the lmms-eval CLI with stvg tasks included and a real exit status

Every command accepts Hydra overrides (key=value, group=option, --multirun, --cfg job).
"""


def config_dir() -> str:
    """The Hydra ``config_path``: ``$STVG_CONF_DIR``, the installed package's configs or the checkout's ``conf/``."""
    return config_source()


def _load(target: str) -> Callable[[DictConfig], object]:
    module_name, func_name = target.split(":")
    module = __import__(module_name, fromlist=[func_name])
    return getattr(module, func_name)


def run_command(command: str, overrides: list[str]) -> int:
    """Run one Hydra subcommand in-process; returns the exit status.

    ``--help`` prints the command's keys; otherwise the config is composed once up front, so a bad
    override or an unset mandatory key ends here with one line, the usage line and exit status 2,
    before the command's (possibly heavy) imports. Hydra's own flags (``--cfg``, ``--multirun``, ...)
    skip that check and go to Hydra unchanged.
    """
    if any(arg in ("-h", "--help") for arg in overrides):
        print(command_help(command))
        return 0
    if not any(arg.startswith("-") for arg in overrides):
        problem = compose_errors(command, overrides)
        if problem:
            print(f"stvg {command}: error: {problem}\n{usage_line(command)}", file=sys.stderr)
            return 2
    import hydra
    from hydra.core.hydra_config import HydraConfig

    status = {"code": 0}

    def task(cfg: DictConfig) -> None:
        try:
            out = HydraConfig.get().runtime.output_dir
            _check_run_dir(cfg, Path(out), HydraConfig.get().mode.name)
            _load(COMMANDS[command])(cfg, Path(out))
        except StvgError as exc:
            print(f"stvg {command}: error: {exc}", file=sys.stderr)
            status["code"] = 2
            if HydraConfig.get().mode.name == "MULTIRUN":
                raise

    wrapped = hydra.main(config_path=config_dir(), config_name=command, version_base=None)(task)
    saved = sys.argv
    sys.argv = [f"stvg {command}", *overrides]
    try:
        wrapped()
    finally:
        sys.argv = saved
    return status["code"]


def _check_run_dir(cfg: DictConfig, run_dir: Path, mode: str) -> None:
    """Outputs go to ``output_dir``: a ``hydra.run.dir`` pointing elsewhere is refused, not obeyed silently."""
    wanted = cfg.get("output_dir")
    if mode == "MULTIRUN" or wanted is None or str(wanted) == "???":
        return
    if Path(str(wanted)).expanduser().resolve() != run_dir.resolve():
        raise StvgError(
            f"hydra.run.dir={run_dir} differs from output_dir={wanted}; the outputs go to output_dir, "
            "so set output_dir=DIR instead of hydra.run.dir"
        )


def _plugin_commands() -> dict:
    """Extra non-Hydra commands registered by the wrappers (entry point group ``stvg.commands``).

    This keeps the core free of lmms-eval/FiftyOne imports: ``lmms_tasks`` registers
    ``lmms-eval`` here rather than the core importing it.
    """
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group="stvg.commands")}


def main(argv: list[str] | None = None) -> int:
    set_openmp_env()  # before anything imports torch: OpenMP reads its wait policy once, when it loads
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    plugins = _plugin_commands()
    if command in plugins:
        return int(plugins[command].load()(rest) or 0)
    if command not in COMMANDS:
        print(f"stvg: unknown command {command!r}; choose one of {', '.join([*COMMANDS, *plugins])}", file=sys.stderr)
        return 2
    return run_command(command, rest)


if __name__ == "__main__":
    sys.exit(main())
