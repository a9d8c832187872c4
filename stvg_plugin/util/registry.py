"""The one name -> spec table behind the model-family, benchmark and protocol registries.

Each extension point (``models.families``, ``adapters.registry``, ``metrics.protocols``) keeps one
:class:`Registry` of its frozen spec dataclasses; a module adds its spec on import with
:meth:`Registry.register` (docs/EXTENDING.md). The built-in modules are imported on the first read,
so a lookup never depends on what happened to be imported before it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Generic, TypeVar

S = TypeVar("S")


class Registry(Generic[S]):
    """Specs of one ``kind`` keyed by their ``name``.

    ``builtin_modules`` are imported on the first read. ``origin(spec)`` names the module a spec
    comes from (None: not known); specs from the built-in modules are listed in the order of
    ``builtin_modules``, whatever was imported first, and the others after them as registered.
    A clash (a second spec under a taken name) raises ``error``.
    """

    def __init__(
        self,
        kind: str,
        error: type[Exception],
        builtin_modules: tuple[str, ...] = (),
        origin: Callable[[S], str | None] | None = None,
    ):
        self.kind = kind
        self.error = error
        self.builtin_modules = builtin_modules
        self.origin = origin
        self._specs: dict[str, S] = {}
        self._loaded = False

    def register(self, spec: S) -> S:
        """Add ``spec`` under ``spec.name`` (the same spec again is a no-op; another one is an error)."""
        name = spec.name  # type: ignore[attr-defined]
        if self._specs.get(name, spec) is not spec:
            raise self.error(f"{self.kind} {name!r} is already registered")
        self._specs[name] = spec
        return spec

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests, plugins that replace a spec); an unknown name is ignored."""
        self._specs.pop(name, None)

    def _load_builtins(self) -> None:
        if not self._loaded:
            self._loaded = True
            for module in self.builtin_modules:
                importlib.import_module(module)

    def _rank(self, spec: S) -> int:
        module: Any = self.origin(spec) if self.origin is not None else None
        return self.builtin_modules.index(module) if module in self.builtin_modules else len(self.builtin_modules)

    def specs(self) -> list[S]:
        """Every spec: the built-in ones in their modules' order, then the others as registered."""
        self._load_builtins()
        return sorted(self._specs.values(), key=self._rank)

    def names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.specs())  # type: ignore[attr-defined]

    def lookup(self, name: str) -> S | None:
        """The spec called ``name``, or None (the caller raises its own message)."""
        self._load_builtins()
        return self._specs.get(name)
