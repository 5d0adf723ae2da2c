"""YAML configs: load with ``base:`` inheritance, apply dotted ``key=value`` overrides, save resolved."""
from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, Iterable

import yaml

from ddtse.errors import DdtseError

SECTIONS = ("data", "model", "system", "sampler", "trainer")


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-4`` (no dot) as a float, as YAML 1.2 does."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def deep_merge(base: dict, update: dict) -> dict:
    """Return ``base`` updated recursively by ``update`` (neither is modified)."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise DdtseError(f"config file not found: {path}")
    try:
        data = yaml.load(path.read_text(), Loader=_Loader) or {}
    except (yaml.YAMLError, ValueError, TypeError, AttributeError, RecursionError) as exc:
        # PyYAML's constructors raise ValueError etc. for e.g. `2001-13-45` or `!!int 1.5`
        raise DdtseError(f"cannot parse config {path}: {exc}".splitlines()[0]) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DdtseError(f"cannot read config {path}: {exc}".splitlines()[0]) from exc
    if not isinstance(data, dict):
        raise DdtseError(f"config {path} must hold a mapping at the top level")
    return data


def load_config(path: str | Path, overrides: Iterable[str] = (), _chain: tuple = ()) -> dict:
    """Load a YAML config; a ``base: other.yaml`` key (relative to the file) is merged underneath.

    Keys and types are checked separately, by ``ddtse.schema.validate_config``."""
    path = Path(path)
    resolved = path.resolve()
    if resolved in _chain:
        raise DdtseError(f"config {path} inherits from itself (base: chain {' -> '.join(p.name for p in _chain)})")
    cfg = load_yaml(path)
    base = cfg.pop("base", None)
    if base:
        bases = [base] if isinstance(base, str) else base
        if not isinstance(bases, list) or not all(isinstance(b, str) and b for b in bases):
            raise DdtseError(f"config {path}: 'base' must be a file name or a list of file names, got {base!r}")
        merged: dict = {}
        for b in bases:
            merged = deep_merge(merged, load_config(path.parent / b, (), (*_chain, resolved)))
        cfg = deep_merge(merged, cfg)
    return apply_overrides(cfg, overrides)


def validate_config(cfg: dict, complete: bool = True) -> dict:
    """Refuse unknown keys and wrong types (see ddtse/schema.py); returns ``cfg``."""
    from ddtse.schema import validate_config as _validate

    return _validate(cfg, complete)


def parse_value(text: str) -> Any:
    """Parse an override's value with YAML rules (``1e-4`` -> float, ``true`` -> bool, ``[1,2]`` -> list)."""
    try:
        return yaml.load(text, Loader=_Loader)
    except (yaml.YAMLError, ValueError, TypeError, AttributeError, RecursionError):
        return text


def _show(text: str) -> str:
    """A user's text quoted on one line (newlines escaped), shortened."""
    text = repr(text)
    return text if len(text) <= 80 else text[:77] + "..."


def apply_overrides(cfg: dict, overrides: Iterable[str]) -> dict:
    """Apply ``a.b.c=value`` overrides; unknown intermediate keys are created."""
    cfg = copy.deepcopy(cfg)
    for item in overrides:
        if "=" not in item:
            raise DdtseError(f"override {_show(item)} is not of the form key=value")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise DdtseError(f"override {_show(item)} has an empty key")
        node = cfg
        for part in parts[:-1]:
            if not isinstance(node.get(part, {}), dict):
                raise DdtseError(f"override {_show(item)}: {part!r} is not a section")
            node = node.setdefault(part, {})
        node[parts[-1]] = parse_value(text)
    return cfg


def save_config(cfg: dict, path: str | Path) -> Path:
    """Write the resolved config as YAML (sections first, in the usual order)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ordered = {k: cfg[k] for k in SECTIONS if k in cfg}
    ordered.update({k: v for k, v in cfg.items() if k not in ordered})
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(yaml.safe_dump(ordered, sort_keys=False, default_flow_style=None))
    tmp.replace(path)
    return path


def get(cfg: dict, dotted: str, default: Any = None) -> Any:
    """``get(cfg, "system.lr", 1e-4)``: read a nested key with a default."""
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node
