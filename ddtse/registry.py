"""Small name registries: ``@MODELS.register("ncsnpp")`` on a class, ``MODELS.build(cfg)`` from YAML.

This module imports no ddtse package: the built-in entries are loaded, on the first lookup, by a
loader that ``ddtse/__init__.py`` installs (``ddtse.components.load``, which names the packages
that register themselves), so the registry sits below everything that fills it."""
from __future__ import annotations

import re
from typing import Any, Callable

from ddtse.errors import DdtseError


class Registry:
    """Maps names to classes (or factories) of one kind."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Callable[..., Any]] = {}

    def register(self, name: str):
        def decorator(obj):
            if name in self._entries and self._entries[name] is not obj:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = obj
            obj.registry_name = name
            return obj

        return decorator

    def get(self, name: str):
        _load_builtins(self.kind)
        if name not in self._entries:
            known = ", ".join(sorted(self._entries)) or "none"
            raise DdtseError(f"unknown {self.kind} {name!r} (known: {known})")
        return self._entries[name]

    def build(self, cfg: dict, **extra):
        """Build from a config dict ``{name: ..., **kwargs}``; ``extra`` kwargs are added."""
        if not isinstance(cfg, dict) or "name" not in cfg:
            raise DdtseError(f"a {self.kind} config needs a 'name' key, got {cfg!r}")
        kwargs = {k: v for k, v in cfg.items() if k != "name"}
        kwargs.update(extra)
        cls = self.get(cfg["name"])
        try:
            return cls(**kwargs)
        except DdtseError:
            raise  # the constructor's own message names the option
        except Exception as exc:  # a value the constructor (or torch, deeper down) refuses
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            named = any(re.search(rf"(?<![\w.]){re.escape(k)}(?![\w(])", message) for k in kwargs)
            culprits = [] if named else _culprits(cls, {k: v for k, v in cfg.items() if k != "name"}, extra)
            named = ", ".join(f"{k}={cfg[k]!r}" for k in culprits)
            where = f"option {named} is refused ({type(exc).__name__}: {message})" if culprits else message
            raise DdtseError(f"bad options for {self.kind} '{cfg['name']}': {where}") from exc

    def names(self) -> list[str]:
        _load_builtins(self.kind)
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        _load_builtins(self.kind)
        return name in self._entries


def _culprits(cls, options: dict, extra: dict, limit: int = 16) -> list[str]:
    """The options whose removal (back to the constructor's default) lets ``cls`` build: which of a
    config's values an error without a name was about. Only on the error path; at most ``limit`` tries."""
    import inspect

    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return []
    found = []
    for key in [k for k in options if k in params and params[k].default is not inspect.Parameter.empty][:limit]:
        try:
            cls(**{k: v for k, v in options.items() if k != key}, **extra)
        except Exception:
            continue
        found.append(key)
    return found


MODELS = Registry("model")
SYSTEMS = Registry("system")
DATASETS = Registry("dataset")
SOURCES = Registry("item source")  # listers of items: name -> function(**options) -> list[Item]

_loader: Callable[[str], None] | None = None
_loaded: set[str] = set()


def install_loader(loader: Callable[[str], None]) -> None:
    """Set the function that imports the built-in entries of a registry kind (``ddtse.components.load``)."""
    global _loader
    _loader = loader


def _load_builtins(kind: str) -> None:
    """Import the modules that register the built-in entries of ``kind`` (once, on the first lookup)."""
    if kind in _loaded or _loader is None:
        return
    _loaded.add(kind)
    _loader(kind)
