"""Small name registries: ``@MODELS.register("ncsnpp")`` on a class, ``MODELS.build(cfg)`` from YAML."""
from __future__ import annotations

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
        _import_builtin_modules()
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
        except (TypeError, ValueError) as exc:  # wrong/missing keyword, or a value the constructor refuses
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DdtseError(f"bad options for {self.kind} '{cfg['name']}': {message}") from exc

    def names(self) -> list[str]:
        _import_builtin_modules()
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        _import_builtin_modules()
        return name in self._entries


MODELS = Registry("model")
SYSTEMS = Registry("system")
DATASETS = Registry("dataset")

_BUILTIN_MODULES = ("ddtse.models", "ddtse.systems", "ddtse.data")
_imported = False


def _import_builtin_modules() -> None:
    """Import the packages whose modules register themselves (once, lazily)."""
    global _imported
    if _imported:
        return
    _imported = True
    import importlib

    for module in _BUILTIN_MODULES:
        importlib.import_module(module)
