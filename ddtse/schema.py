"""Config validation: every key of a config must be known, and every value of the declared type.

``validate_config(cfg)`` runs before anything is built (train.py); a typo or a wrong type is one
DdtseError naming the key (``unknown config key system.lrr (did you mean system.lr?)``,
``data.batch_size must be an int, got 'four' (str)``).

Where the keys come from (one place each):

- ``system:`` and ``sampler:`` — the ``config_keys`` / ``sampler_keys`` class attributes of the
  system named by ``system.name`` (ddtse/systems), merged along the class hierarchy, so a new
  system declares only the keys it adds (``config_keys = {"my_weight": float}``).
- ``data:`` — :data:`DATA_KEYS` below; ``data.train/valid/test`` by the keyword arguments (and
  their annotations) of the dataset class named by ``name`` (DATASETS registry).
- ``model:`` — the model constructor's keyword arguments (MODELS registry); the constructor
  checks values (``Registry.build``).
- ``trainer:`` — the arguments of ``lightning.pytorch.Trainer.__init__`` and their annotations.

A key's spec is a type or typing hint (``int``, ``float`` (ints accepted), ``str | None``,
``Literal["min", "max"]``, ``list[float]`` (a list or tuple)), or a dict of specs for a nested
section (which may also be null).
"""
from __future__ import annotations

import collections.abc
import difflib
import functools
import inspect
import types
import typing
from typing import Any, Literal, Union

from ddtse.errors import DdtseError

#: the ``data:`` keys the datamodule reads (ddtse/data/datamodule.py); train/valid/test are datasets
DATA_KEYS: dict[str, Any] = {
    "sample_rate": int,
    "batch_size": int,
    "valid_batch_size": int,
    "num_workers": int,
    "pin_memory": bool,
}
DATASET_PARTS = ("train", "valid", "test")
#: arguments of the datasets that the datamodule sets itself
DATASET_SET_BY_DATAMODULE = {"sample_rate": "data.sample_rate", "seed": "the top-level seed",
                             "train": "the part (train/valid/test)"}
#: Trainer arguments that run_training sets itself
TRAINER_SET_BY_TRAINING = ("callbacks", "logger", "default_root_dir")
TOP_LEVEL = ("seed", "data", "model", "system", "sampler", "trainer")
OPEN = object()  # marker: a signature with **kwargs accepts any key


# ----------------------------------------------------------------------------- type checks
def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def matches(value, hint) -> bool:
    """Whether a YAML value fits a typing hint (unknown/class hints other than the YAML types: no)."""
    if hint is Any or hint is inspect.Parameter.empty or hint is object:
        return True
    if hint is None or hint is type(None):
        return value is None
    origin = typing.get_origin(hint)
    if origin is Union or origin is types.UnionType:
        return any(matches(value, arg) for arg in typing.get_args(hint))
    if origin is Literal:
        return any(value == arg and type(value) is type(arg) for arg in typing.get_args(hint))
    if origin is typing.Annotated:
        return matches(value, typing.get_args(hint)[0])
    if hint is float:
        return _is_number(value)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is bool:
        return isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    seq_origins = (list, tuple, collections.abc.Sequence, collections.abc.Iterable, collections.abc.Collection)
    if hint in (list, tuple) or origin in seq_origins:
        if not isinstance(value, (list, tuple)):
            return False
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        if not args:
            return True
        if origin is tuple and len(args) > 1 and len(args) == len(typing.get_args(hint)):
            return len(value) == len(args) and all(matches(v, a) for v, a in zip(value, args))
        return all(matches(v, args[0]) for v in value)
    if hint is dict or origin in (dict, collections.abc.Mapping):
        return isinstance(value, dict)
    if isinstance(hint, type):
        if hint.__module__ == "pathlib" and isinstance(value, str):
            return True
        return isinstance(value, hint)
    return True  # a hint we cannot judge: leave the value to the code that reads it


def describe(hint) -> str:
    """A short human name of a hint: ``an int``, ``a number or null``, ``one of 'min', 'max'``."""
    if hint is None or hint is type(None):
        return "null"
    origin = typing.get_origin(hint)
    if origin is Union or origin is types.UnionType:
        parts = [describe(a) for a in typing.get_args(hint) if not _unrepresentable(a)]
        return " or ".join(dict.fromkeys(parts)) or "another type"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    names = {float: "a number", int: "an int", bool: "true or false", str: "a string", dict: "a mapping"}
    if hint in names:
        return names[hint]
    if hint in (list, tuple) or origin in (list, tuple, collections.abc.Sequence, collections.abc.Iterable):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return f"a list of {describe(args[0]).split(' ', 1)[-1]}s" if args else "a list"
    if hint is dict or origin in (dict, collections.abc.Mapping):
        return "a mapping"
    if isinstance(hint, type) and hint.__module__ == "pathlib":
        return "a string"
    return getattr(hint, "__name__", str(hint))


def _unrepresentable(hint) -> bool:
    """Classes a YAML value can never be (Accelerator, Callback, ...): left out of messages."""
    return (isinstance(hint, type) and hint not in (int, float, bool, str, list, tuple, dict, type(None))
            and hint.__module__ != "pathlib")


def _show(value) -> str:
    text = repr(value)
    return (text[:60] + "...") if len(text) > 63 else text


# ----------------------------------------------------------------------------- key checks
def _key(key) -> str:
    """A config key for a message: as is when plain, else quoted on one line."""
    return key if isinstance(key, str) and key.isprintable() and len(key) <= 60 else _show(key)


def unknown_key_error(where: str, key: str, known) -> DdtseError:
    """``unknown config key system.lrr (did you mean system.lr?)``."""
    known = sorted(str(k) for k in known)
    key = _key(key)
    dotted = f"{where}.{key}" if where else key
    close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
    if close:
        hint = f"did you mean {where + '.' if where else ''}{close[0]}?"
    elif len(known) <= 30:
        hint = "known keys: " + (", ".join(known) or "none")
    else:
        hint = "see docs/design.md"
    return DdtseError(f"unknown config key {dotted} ({hint})")


def check_section(section, schema: dict, where: str, open_keys: bool = False) -> None:
    """Validate one mapping against ``schema`` (key -> hint, or a nested dict schema)."""
    if section is None:
        return
    if not isinstance(section, dict):
        raise DdtseError(f"config key {where} must be a mapping, got {_show(section)}")
    for key, value in section.items():
        dotted = f"{where}.{_key(key)}" if where else _key(key)
        if key not in schema:
            if open_keys:
                continue
            raise unknown_key_error(where, key, schema)
        spec = schema[key]
        if isinstance(spec, dict):
            check_section(value, spec, dotted)
        elif not matches(value, spec):
            raise DdtseError(f"config key {dotted} must be {describe(spec)}, got {_show(value)} "
                             f"({type(value).__name__})")


def signature_schema(obj, skip=()) -> tuple[dict, bool]:
    """(keyword arguments -> type hints, accepts **kwargs) of a class or function.

    For a class, ``__init__``s along the MRO are followed while each passes ``**kwargs`` on."""
    schema: dict = {}
    functions = []
    if isinstance(obj, type):
        for klass in obj.__mro__:
            if "__init__" in vars(klass) and klass is not object:
                functions.append(vars(klass)["__init__"])
    else:
        functions.append(obj)
    open_keys = not functions
    for fn in functions:
        try:
            params = inspect.signature(fn).parameters
        except (TypeError, ValueError):
            return schema, True
        try:
            hints = typing.get_type_hints(fn)
        except Exception:  # annotations that do not evaluate: names only
            hints = {}
        open_keys = False
        for name, param in params.items():
            if name == "self" or param.kind in (param.VAR_POSITIONAL, param.POSITIONAL_ONLY):
                continue
            if param.kind == param.VAR_KEYWORD:
                open_keys = True
                continue
            if name not in skip:
                schema.setdefault(name, hints.get(name, Any))
        if not open_keys:
            break
        if getattr(fn, "__module__", "").startswith("torch."):
            break
    return schema, open_keys


# ----------------------------------------------------------------------------- sections
def _system_class(cfg: dict):
    from ddtse.registry import SYSTEMS

    name = (cfg.get("system") or {}).get("name") if isinstance(cfg.get("system"), dict) else None
    if name is None:
        return None
    if not isinstance(name, str):
        raise DdtseError(f"config key system.name must be a string, got {_show(name)}")
    return SYSTEMS.get(name)


def _all_system_keys(attr: str) -> dict:
    from ddtse.registry import SYSTEMS

    merged: dict = {}
    for name in SYSTEMS.names():
        merged.update(SYSTEMS.get(name).declared_keys(attr))
    return merged


def check_system(cfg: dict) -> None:
    """``system:`` and ``sampler:`` against the named system's declared keys (all systems' without a name)."""
    cls = _system_class(cfg)
    system_keys = cls.declared_keys("config_keys") if cls else _all_system_keys("config_keys")
    sampler_keys = cls.declared_keys("sampler_keys") if cls else _all_system_keys("sampler_keys")
    system_keys = dict(system_keys)
    if "val_opts" in system_keys and system_keys["val_opts"] is dict:
        system_keys["val_opts"] = sampler_keys
    check_section(cfg.get("system"), system_keys, "system")
    if cfg.get("sampler") and not sampler_keys:
        key = next(iter(cfg["sampler"]))
        raise DdtseError(f"unknown config key sampler.{_key(key)} "
                         f"(system '{cfg['system']['name']}' takes no sampler options)")
    check_section(cfg.get("sampler"), sampler_keys, "sampler")


def check_data(data) -> None:
    """``data:`` keys and types, and each dataset's options against its constructor."""
    from ddtse.registry import DATASETS

    if data is None:
        return
    schema = {**DATA_KEYS, **{part: dict | None for part in DATASET_PARTS}}
    check_section(data, schema, "data")
    for part in DATASET_PARTS:
        sub = data.get(part)
        if sub is None:
            continue
        where = f"data.{part}"
        cls = _registered_class(sub, where, DATASETS)
        keys, open_keys = signature_schema(cls)
        for key, set_by in DATASET_SET_BY_DATAMODULE.items():
            if key in sub:
                raise DdtseError(f"config key {where}.{key} is set from {set_by}; remove it")
            keys.pop(key, None)
        check_section(sub, {"name": str, **keys}, where, open_keys=open_keys)


def _registered_class(section: dict, where: str, registry):
    """The class a config section names with ``name`` (a missing or non-string name is one line)."""
    if "name" not in section:
        raise DdtseError(f"{where} needs a 'name' (one of {', '.join(registry.names())})")
    if not isinstance(section["name"], str):
        raise DdtseError(f"config key {where}.name must be a string, got {_show(section['name'])}")
    return registry.get(section["name"])


def check_model(model, where: str = "model") -> None:
    """``model:`` keys against the constructor's arguments (values are checked by the constructor)."""
    from ddtse.registry import MODELS

    if model is None:
        return
    if not isinstance(model, dict):
        raise DdtseError(f"config key {where} must be a mapping with a 'name', got {_show(model)}")
    cls = _registered_class(model, where, MODELS)
    keys, open_keys = signature_schema(cls)
    if not open_keys:
        for key in model:
            if key != "name" and key not in keys:
                raise unknown_key_error(where, key, ["name", *keys])
    for key, value in model.items():
        if isinstance(value, dict) and isinstance(value.get("name"), str) and value["name"] in MODELS:
            check_model(value, f"{where}.{_key(key)}")


@functools.lru_cache(maxsize=1)
def _trainer_schema() -> tuple:
    import lightning as L

    keys, _ = signature_schema(L.Trainer.__init__)
    return tuple(keys.items())


def trainer_schema() -> dict:
    """``trainer:`` key -> type hint, from ``lightning.pytorch.Trainer.__init__``."""
    return dict(_trainer_schema())


def check_trainer(trainer) -> None:
    """``trainer:`` keys against ``lightning.pytorch.Trainer`` (names and annotated types)."""
    if trainer is None:
        return
    keys = trainer_schema()
    if isinstance(trainer, dict):
        for key in TRAINER_SET_BY_TRAINING:
            if key in trainer:
                raise DdtseError(f"config key trainer.{key} is set by train.py; remove it")
    for key in TRAINER_SET_BY_TRAINING:
        keys.pop(key, None)
    check_section(trainer, keys, "trainer")


def validate_config(cfg: dict, complete: bool = True) -> dict:
    """Check every key and type of a (resolved) config; returns it. ``complete=False`` checks only the
    sections present (config fragments such as conf/model/*.yaml)."""
    if not isinstance(cfg, dict):
        raise DdtseError("a config must be a mapping")
    for key in cfg:
        if key not in TOP_LEVEL:
            raise unknown_key_error("", key, TOP_LEVEL)
    check_section({k: v for k, v in cfg.items() if k == "seed"}, {"seed": int}, "")
    for key in ("data", "system", "sampler", "trainer"):
        if key in cfg and cfg[key] is not None and not isinstance(cfg[key], dict):
            raise DdtseError(f"config key {key} must be a mapping, got {_show(cfg[key])}")
    if complete:
        if not (cfg.get("system") or {}).get("name"):
            raise DdtseError("config has no system.name (e.g. ddtse, sgmse, discriminative)")
        if not isinstance(cfg.get("model"), dict):
            raise DdtseError("config has no model section (model: {name: ...})")
        if not isinstance(cfg.get("data"), dict) or "sample_rate" not in cfg["data"]:
            raise DdtseError("data.sample_rate is required (e.g. 16000)")
    check_system(cfg)
    check_data(cfg.get("data"))
    check_model(cfg.get("model"))
    check_trainer(cfg.get("trainer"))
    return cfg
