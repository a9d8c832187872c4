"""``stvg lmms-eval ...``: the stock lmms-eval CLI, in-process, with the stvg tasks and a real exit status.

Why: ``lmms-eval`` exits 0 when an evaluation raises (it only logs the error unless
``--verbosity DEBUG``), which hides failures from CI. This wrapper parses the same flags with
lmms-eval's own parser, adds ``--include_path`` for :data:`lmms_tasks.TASKS_DIR`, checks the data
of the selected ``stvg_*`` tasks before loading any model (a missing annotation file is named with
the variable to set), runs :func:`lmms_eval.__main__.cli_evaluate_single` and returns

* 0 - results were produced (and written, with ``--output_path``);
* 1 - the evaluation raised or produced no results;
* 2 - bad arguments or task data (nothing was run).
"""

from __future__ import annotations

import datetime
import os
import sys
import traceback

from lmms_tasks import TASKS_DIR
from lmms_tasks.common import TASK_GROUPS, TASK_SOURCES, TaskDataError, expand_task_names, resolve_source

PROG = "stvg lmms-eval"


def _error(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)


def _root_cause(exc: BaseException) -> BaseException:
    """lmms-eval retries dataset loading (tenacity): report the last attempt's exception, not RetryError."""
    seen = 0
    while seen < 8:
        seen += 1
        last = getattr(exc, "last_attempt", None)
        if last is not None and callable(getattr(last, "exception", None)) and last.exception() is not None:
            exc = last.exception()
            continue
        break
    return exc


def _parse(argv: list[str]):
    from lmms_eval.__main__ import parse_eval_args

    saved = sys.argv
    sys.argv = [PROG, *argv]
    try:
        _, args = parse_eval_args()
    finally:
        sys.argv = saved
    return args


LIST_COMMANDS = ("list", "list_groups", "list_tags", "list_subtasks")


def _tasks_argument(argv: list[str]) -> str | None:
    """The ``--tasks`` value, read without lmms-eval's parser (importing it takes seconds)."""
    value = None
    for i, arg in enumerate(argv):
        if arg == "--tasks" and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--tasks="):
            value = arg.split("=", 1)[1]
    return value


def _check_task_names(tasks: str) -> None:
    """A name that looks like ours (``stvg...``, or close to one) but is none of ours: name the closest."""
    import difflib

    known = [*TASK_SOURCES, *TASK_GROUPS]
    for name in (n.strip() for n in tasks.split(",")):
        if not name or any(ch in name for ch in "*?[") or name in known or expand_task_names([name]):
            continue
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
        if name.startswith("stvg") or close:
            hint = f"; did you mean {' or '.join(close)}?" if close else f"; stvg tasks: {', '.join(sorted(known))}"
            raise TaskDataError(f"unknown task {name!r}{hint}")


def _check_task_data(tasks: str) -> None:
    _check_task_names(tasks)
    for task in expand_task_names(tasks.split(",")):
        resolve_source(task)


def _pin_lmms_eval_provenance() -> None:
    """Keep our repository's commit out of ``git_hash`` / ``lmms_eval_version`` in the results file.

    lmms-eval runs ``git -C <folder above its package>``; installed in a project's ``.venv`` that folder
    (site-packages) lies inside the project's checkout, so git reports the project's commit. A git
    ceiling at site-packages' parent stops that walk (an lmms-eval checkout installed editable keeps its
    own ``.git`` and is unaffected); the version string then falls back to the installed version.
    """
    from importlib.metadata import PackageNotFoundError, version
    from pathlib import Path

    import lmms_eval
    import lmms_eval.evaluator as evaluator

    root = Path(lmms_eval.__file__).resolve().parents[1]
    ceilings = [c for c in os.environ.get("GIT_CEILING_DIRECTORIES", "").split(os.pathsep) if c]
    os.environ["GIT_CEILING_DIRECTORIES"] = os.pathsep.join([*ceilings, str(root.parent)])
    from_git = evaluator.get_lmms_eval_version_string

    def version_string() -> str:
        text = from_git()
        if "unknown" not in text:
            return text
        try:
            return version("lmms-eval")
        except PackageNotFoundError:
            return text

    evaluator.get_lmms_eval_version_string = version_string


def _setup_logging(verbosity: str) -> None:
    from loguru import logger as eval_logger

    eval_logger.remove()
    eval_logger.add(sys.stdout, level=verbosity, format="{time:HH:mm:ss} | {level: <8} | {name}:{line} - {message}")
    os.environ["VERBOSITY"] = verbosity


def _is_main_process() -> bool:
    """Mirror ``cli_evaluate``: set up accelerate's process group unless one exists (``accelerate launch``)."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import InitProcessGroupKwargs

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank() == 0
    handler = InitProcessGroupKwargs(timeout=datetime.timedelta(seconds=60000))
    return Accelerator(kwargs_handlers=[handler]).is_main_process


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["eval"]:
        argv = argv[1:]
    tasks = _tasks_argument(argv)
    if tasks and tasks not in LIST_COMMANDS and "-h" not in argv and "--help" not in argv:
        try:  # before lmms-eval's parser: importing it (torch, transformers) takes seconds
            _check_task_data(tasks)
        except TaskDataError as exc:
            _error(str(exc))
            return 2
    try:
        args = _parse(argv)
    except SystemExit as exc:  # --help, or an argparse error (already printed)
        return int(exc.code or 0) if isinstance(exc.code, int) else 2
    if args.config:
        _error("--config is not supported here; pass the flags directly")
        return 2
    if not args.include_path:
        args.include_path = TASKS_DIR
    elif os.path.abspath(args.include_path) != TASKS_DIR:
        args.include_path = [args.include_path, TASKS_DIR]
    if not args.tasks:
        _error("--tasks is required (e.g. --tasks stvg_synthetic)")
        return 2
    if args.tasks not in LIST_COMMANDS:
        try:  # again: the flags as lmms-eval parsed them (e.g. an abbreviated --task)
            _check_task_data(args.tasks)
        except TaskDataError as exc:
            _error(str(exc))
            return 2

    from lmms_eval.__main__ import cli_evaluate_single
    from lmms_eval.utils import make_table

    _setup_logging(args.verbosity)
    _pin_lmms_eval_provenance()
    is_main = _is_main_process()
    try:
        results, _samples = cli_evaluate_single(args)
    except SystemExit as exc:  # `--tasks list` and friends end with a bare sys.exit(): a success
        if exc.code is None or isinstance(exc.code, int):
            return int(exc.code or 0)
        _error(str(exc.code))
        return 1
    except Exception as exc:  # every failure becomes a message and exit status 1
        cause = _root_cause(exc)
        if args.verbosity == "DEBUG":
            traceback.print_exception(cause)
        _error(f"evaluation failed: {type(cause).__name__}: {cause}")
        return 1
    if not is_main:
        return 0
    if not results or not results.get("results"):
        _error("the evaluation produced no results")
        return 1
    print(make_table(results))
    if "groups" in results:
        print(make_table(results, "groups"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
