"""Make the installed ``@stvg/grounding`` plugin visible to FiftyOne: link (or copy) it into the plugins dir.

Why: FiftyOne finds plugins by walking ``FIFTYONE_PLUGINS_DIR`` for ``fiftyone.yml``; it never looks
in site-packages. This package *is* the plugin folder, so after ``pip install stvg`` one command
puts it where FiftyOne looks::

    python -m fiftyone_plugin.install                       # symlink into $FIFTYONE_PLUGINS_DIR
    python -m fiftyone_plugin.install --copy --plugins-dir DIR

A symlink follows upgrades of the package; ``--copy`` suits a plugins dir shared with machines that
do not have the package. An existing entry is replaced only if it is our own link, or with ``--force``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

PLUGIN_DIR = Path(__file__).resolve().parent
ENTRY_NAME = "stvg-grounding"
DEFAULT_PLUGINS_DIR = Path("~/fiftyone/__plugins__")  # FiftyOne's default when the variable is unset


def plugins_dir(explicit: str | None = None) -> Path:
    """``--plugins-dir``, else ``$FIFTYONE_PLUGINS_DIR``, else FiftyOne's default."""
    return Path(explicit or os.environ.get("FIFTYONE_PLUGINS_DIR") or DEFAULT_PLUGINS_DIR).expanduser()


def install(target_dir: Path, copy: bool = False, force: bool = False) -> Path:
    """Link or copy the plugin to ``target_dir/stvg-grounding``; returns that path."""
    target_dir.mkdir(parents=True, exist_ok=True)
    entry = target_dir / ENTRY_NAME
    if entry.is_symlink() and entry.resolve() == PLUGIN_DIR:
        if not copy:
            return entry  # already installed, nothing to do
        entry.unlink()
    elif entry.is_symlink() or entry.exists():
        if not force:
            raise FileExistsError(f"{entry} exists and is not a link to this package; pass --force to replace it")
        if entry.is_symlink() or entry.is_file():
            entry.unlink()
        else:
            shutil.rmtree(entry)
    if copy:
        tmp = target_dir / f".{ENTRY_NAME}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(PLUGIN_DIR, tmp, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        tmp.rename(entry)  # the plugins dir never holds a half-copied plugin
    else:
        entry.symlink_to(PLUGIN_DIR, target_is_directory=True)
    return entry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fiftyone_plugin.install", description=__doc__.splitlines()[0])
    parser.add_argument("--plugins-dir", help="default: $FIFTYONE_PLUGINS_DIR, else ~/fiftyone/__plugins__")
    parser.add_argument("--copy", action="store_true", help="copy the files instead of linking to the package")
    parser.add_argument("--force", action="store_true", help="replace an existing stvg-grounding entry")
    args = parser.parse_args(argv)
    try:
        entry = install(plugins_dir(args.plugins_dir), copy=args.copy, force=args.force)
    except OSError as exc:
        print(f"fiftyone_plugin.install: error: {exc}", file=sys.stderr)
        return 2
    print(f"installed @stvg/grounding at {entry}; FiftyOne sees it when FIFTYONE_PLUGINS_DIR={entry.parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
