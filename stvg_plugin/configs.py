"""Where the ``stvg`` Hydra configs live, what ``stvg <command> --help`` says, and the checks that
run before a command starts.

Why a module of its own: the configs are found in three situations (the checkout's ``conf/``, an
installed package's ``stvg_plugin/conf`` copied there at build time by ``setup.py``, or
``$STVG_CONF_DIR``), and the help text and the up-front checks read the same files. The checks run
before the command's module is imported, so a missing key costs a fraction of a second and prints one
line plus the command's usage line, instead of Hydra's traceback.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from importlib import resources
from importlib.abc import Traversable
from importlib.util import find_spec
from pathlib import Path

PACKAGED_CONF = "stvg_plugin.conf"
CHECKOUT_CONF = Path(__file__).resolve().parent.parent / "conf"


def config_source() -> str:
    """The Hydra ``config_path`` of the configs: ``$STVG_CONF_DIR``, the packaged copy, or the checkout's.

    The packaged copy (``pkg://stvg_plugin.conf``) exists only in a built distribution, so an
    editable install or a checkout on ``PYTHONPATH`` reads ``conf/`` itself, the source of truth.
    """
    env = os.environ.get("STVG_CONF_DIR")
    if env:
        return str(Path(env).resolve())
    if find_spec(PACKAGED_CONF) is not None:
        return f"pkg://{PACKAGED_CONF}"
    return str(CHECKOUT_CONF)


def config_root() -> Traversable:
    """The config directory as a readable tree (a path or a package resource)."""
    source = config_source()
    if source.startswith("pkg://"):
        return resources.files(source[len("pkg://"):])
    return Path(source)


@dataclass(frozen=True)
class ConfigKey:
    """One settable key of a command's config: its dotted name, its default text and its comment."""

    name: str
    default: str
    help: str


@dataclass(frozen=True)
class ConfigGroup:
    """A config group in a command's defaults list (``model=<option>``) and the options it offers."""

    name: str
    default: str
    options: tuple[str, ...]


_KEY_LINE = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z_][\w.]*):(?P<rest>.*)$")
_DEFAULT_ITEM = re.compile(r"^\s*-\s*(?:override\s+)?(?P<group>[\w/]+)\s*:\s*(?P<option>\S+)")


def _split_comment(text: str) -> tuple[str, str]:
    """``value  # comment`` -> (value, comment); a ``#`` inside quotes is part of the value."""
    quote = None
    for i, ch in enumerate(text):
        if ch in "\"'":
            quote = None if quote == ch else (quote or ch)
        elif ch == "#" and quote is None and (i == 0 or text[i - 1].isspace()):
            return text[:i].strip(), text[i + 1:].strip()
    return text.strip(), ""


def read_text(relative: str) -> str:
    return config_root().joinpath(relative).read_text(encoding="utf-8")


def usage_line(command: str) -> str:
    """The first comment line of ``<command>.yaml`` (``# stvg predict model=... output_dir=DIR``)."""
    for line in read_text(f"{command}.yaml").splitlines():
        if line.startswith("# stvg "):
            text = line[2:].split(":", 1)[0] if line[2:].startswith(f"stvg {command}:") else line[2:]
            return f"usage: {text.strip()}"
    return f"usage: stvg {command} [key=value ...]"


def config_keys(text: str) -> tuple[list[ConfigKey], list[ConfigGroup], bool]:
    """Keys (with the comment above or beside each), defaults-list groups and the ``_global_`` flag of a config.

    Line-based on purpose: YAML parsers drop comments, and the comments are the documentation.
    """
    keys: list[ConfigKey] = []
    groups: list[ConfigGroup] = []
    comment: list[str] = []
    parents: list[tuple[int, str]] = []
    in_defaults = False
    seen_key = False  # the comment block opening a file describes the file, not its first key
    is_global = "@package _global_" in text
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comment.append(stripped.lstrip("#").strip())
            continue
        if not stripped:
            comment = []
            continue
        if not seen_key and not line.startswith((" ", "-")):
            comment, seen_key = [], True
        if in_defaults and stripped.startswith("-"):
            item = _DEFAULT_ITEM.match(line)
            if item:
                groups.append(ConfigGroup(item["group"], item["option"], ()))
            comment = []
            continue
        match = _KEY_LINE.match(line)
        if not match:
            comment = []
            continue
        indent = len(match["indent"])
        in_defaults = indent == 0 and match["key"] == "defaults"
        while parents and parents[-1][0] >= indent:
            parents.pop()
        name = ".".join([*(p for _, p in parents), match["key"]])
        value, inline = _split_comment(match["rest"])
        description = inline or " ".join(c for c in comment if not c.startswith("@package"))
        comment = []
        if in_defaults or name.split(".")[0] == "hydra":
            continue
        if value:
            keys.append(ConfigKey(name, value if len(value) <= 40 else value[:36] + " ...", description))
        else:
            parents.append((indent, match["key"]))
            if description:
                keys.append(ConfigKey(f"{name}.*", "", description))
    return keys, groups, is_global


def group_options(group: str) -> tuple[str, ...]:
    folder = config_root().joinpath(group)
    if not folder.is_dir():
        return ()
    return tuple(sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml")))


def command_help(command: str) -> str:
    """``stvg <command> --help``: the usage line, then every key and group on one line each."""
    keys, groups, _ = config_keys(read_text(f"{command}.yaml"))
    lines = [usage_line(command)]
    if groups:
        lines += ["", "groups (group=option):"]
    seen: set[str] = {k.name for k in keys}
    for group in groups:
        options = group_options(group.name)
        lines.append(f"  {group.name + '=' + group.default:<32}  one of: {', '.join(options) or '(none)'}")
        if group.default != "null" and options:
            sub_keys, _, is_global = config_keys(read_text(f"{group.name}/{group.default}.yaml"))
            if is_global:  # its keys land at the top level of the command's config
                keys += [k for k in sub_keys if k.name not in seen]
                seen.update(k.name for k in sub_keys)
    lines += ["", "keys (key=value; ??? = required):"]
    width = max((len(f"{k.name}={k.default}") for k in keys), default=0)
    width = min(width, 44)
    for key in keys:
        shown = f"{key.name}={key.default}" if key.default else key.name
        lines.append(f"  {shown:<{width}}  {key.help}".rstrip())
    lines += ["", "Hydra flags also work: --cfg job (print the composed config), --multirun, group=option."]
    return "\n".join(lines)


def compose_errors(command: str, overrides: list[str]) -> str | None:
    """Compose the command's config with the overrides; a one-line problem, or None when it composes.

    Catches what Hydra would otherwise report with a traceback or its "exception formatting"
    error: a bad override, an unknown key or group option, and a mandatory key (``???``) left unset.
    """
    from hydra import compose, initialize_config_dir, initialize_config_module
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    source = config_source()
    init = (initialize_config_module(config_module=source[len("pkg://"):], version_base=None)
            if source.startswith("pkg://") else initialize_config_dir(config_dir=source, version_base=None))
    try:
        with init:
            cfg = compose(config_name=command, overrides=overrides)
            missing = sorted(OmegaConf.missing_keys(cfg))
    except (HydraException, OmegaConfBaseException) as exc:
        lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
        if len(lines) > 1 and lines[1].startswith("Available options"):  # one option per line: make it one line
            options = [o for o in lines[2:] if not o.startswith("Config search path")]
            options = options[:options.index("Config search path:")] if "Config search path:" in options else options
            return f"{lines[0]}; {lines[1]} {', '.join(options)}"
        return " ".join(lines[:2])  # Hydra puts the reason on the next line
    if missing:
        listed = ", ".join(missing)
        return f"missing mandatory key{'s' if len(missing) > 1 else ''} {listed}: pass " + \
            " ".join(f"{k}=..." for k in missing)
    return None
