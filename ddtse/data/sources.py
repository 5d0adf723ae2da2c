"""One way in for items: the item-source registry and its command-line door.

A source is a lister registered in ``ddtse.registry.SOURCES``: ``function(**options) ->
list[Item]`` (``ddtse.data.items.Item``), with reference, interferer and enrollment filled where the
format knows them. Each lister lives in its format's module and registers itself:

| source | lister | options |
|---|---|---|
| ``pair`` | ``items.items_from_pair`` | ``mixture``, ``enrollment``, ``item_id`` |
| ``folder`` | ``items.items_from_folder`` | ``input_dir``, ``enrollment`` |
| ``list`` | ``items.items_from_list`` | ``path`` (CSV/TSV: id, mixture[, enrollment, reference, interferer, group]) |
| ``folders`` | ``items.items_from_folders`` | ``gt_dir``, ``mix_dir``, ``interferer_dir``, ``enroll_dir`` |
| ``librimix`` | ``librimix.items_from_librimix`` | ``split_dir``, ``mixture_type``, ``enrollment_map``, ``enrollments`` |
| ``extr_list`` | ``lists.items_from_extraction_list`` | ``list_path``, ``root`` |

A new format costs one module that registers its lister (``@SOURCES.register("name")``) and one
import line in ``ddtse/data/__init__.py``; infer, score, report and evaluate then take it as
``--source name --source_opt key=value ...`` (``add_source_args`` / ``items_from_args``). The
shorthands of before (``--list F``, ``--split DIR``, ``--input_dir D``, ...) are the same request
spelled shorter.
"""
from __future__ import annotations

import inspect

from ddtse.errors import DdtseError
from ddtse.registry import SOURCES

#: shorthand option -> (source it selects, the source option it fills, help)
SHORTHANDS = {
    "--mixture": ("pair", "mixture", "one mixture file (source pair)"),
    "--input_dir": ("folder", "input_dir", "a folder of mixtures; ids (and outputs) mirror its tree (source folder)"),
    "--list": ("list", "path", "CSV/TSV with columns id, mixture[, enrollment, reference, interferer, group] "
                               "(source list; relative paths are relative to the file)"),
    "--split": ("librimix", "split_dir", "a Libri2Mix split folder, e.g. Libri2Mix/wav16k/min/test (source librimix)"),
    "--extr_list": ("extr_list", "list_path", "a WSJ0-2mix-extr list 'target SNR interferer -SNR enrollment' "
                                              "(source extr_list)"),
    "--gt_dir": ("folders", "gt_dir", "reference (clean target) folder; side files matched by relative path or "
                                      "name (source folders)"),
}
#: option of a source given as its own flag -> (source option, help)
SOURCE_FLAGS = {
    "--enrollment": ("enrollment", "enrollment file for --mixture / --input_dir"),
    "--mixture_type": ("mixture_type", "Libri2Mix mixture folder (default mix_both)"),
    "--enrollment_map": ("enrollment_map", "Libri2Mix: SpeakerBeam-style map_mixture2enrollment (default: the "
                                           "split's own)"),
    "--mix_dir": ("mix_dir", "folders: mixture folder, for SI-SDRi and accepted"),
    "--interferer_dir": ("interferer_dir", "folders: the interfering speakers' sources (matched like --gt_dir), "
                                           "for si_sdr_interferer, selected and confusion"),
    "--enroll_dir": ("enroll_dir", "folders: enrollments matched by name, for spk_sim"),
}
#: old spellings, accepted by ddtse.cli.ArgumentParser and never shown in --help
LEGACY = {"--librimix_split": "--split", "--enroll_map": "--enrollment_map"}
BUILTIN = "pair, folder, list, librimix, extr_list, folders"


def add_source_args(parser, shorthands=tuple(SHORTHANDS), flags=tuple(SOURCE_FLAGS), title: str = "items"):
    """Add ``--source NAME``, ``--source_opt KEY=VALUE`` (repeatable) and the chosen shorthands and
    source flags to ``parser`` (a ``ddtse.cli.ArgumentParser``, whose legacy spellings are extended)."""
    group = parser.add_argument_group(f"{title} (one source: --source NAME [--source_opt KEY=VALUE ...], "
                                      "or one shorthand)")
    group.add_argument("--source", default=None, metavar="NAME", help=f"item source ({BUILTIN}, or a registered one)")
    group.add_argument("--source_opt", action="append", default=[], metavar="KEY=VALUE",
                       help="an option of the source, e.g. --source_opt path=items.csv (repeatable)")
    for flag in shorthands:
        group.add_argument(flag, default=None, help=SHORTHANDS[flag][2])
    for flag in flags:
        group.add_argument(flag, default=None, help=SOURCE_FLAGS[flag][1])
    parser.set_defaults(source_shorthands=tuple(shorthands), source_flags=tuple(flags))  # what source_request reads
    legacy = getattr(parser, "legacy", None)
    if legacy is not None:
        for old, new in LEGACY.items():
            if new in shorthands or new in flags:
                legacy.setdefault(old, new)
    return group


def source_request(args) -> tuple[str, dict, dict] | None:
    """(source name, its options, flags that gave them) of the command line; None when no source is named.

    DdtseError when two sources are asked for or a ``--source_opt`` is malformed."""
    chosen = {}
    options, given = {}, {}
    shorthands = getattr(args, "source_shorthands", ())
    for flag in shorthands:
        name, key, _ = SHORTHANDS[flag]
        value = getattr(args, flag[2:], None)
        if value is not None:
            chosen[flag] = name
            options[key], given[key] = value, flag
    explicit = getattr(args, "source", None)
    names = set(chosen.values()) | ({explicit} if explicit else set())
    if len(names) > 1 or len(chosen) > 1:
        asked = ([f"--source {explicit}"] if explicit else []) + list(chosen)
        raise DdtseError(f"give exactly one input (source of items), got {' and '.join(asked)}")
    if not names:
        if getattr(args, "source_opt", None):
            raise DdtseError("--source_opt needs --source NAME")
        return None
    for text in getattr(args, "source_opt", None) or []:
        key, sep, value = text.partition("=")
        key = key.strip()
        if not sep or not key:
            raise DdtseError(f"--source_opt takes KEY=VALUE, got {text!r}")
        if key in options:
            raise DdtseError(f"source option {key} is given twice ({given[key]} and --source_opt {key}=...)")
        options[key], given[key] = value.strip(), f"--source_opt {key}"
    for flag in getattr(args, "source_flags", ()):
        key = SOURCE_FLAGS[flag][0]
        value = getattr(args, flag[2:], None)
        if value is not None:
            if key in options:
                raise DdtseError(f"source option {key} is given twice ({given[key]} and {flag})")
            options[key], given[key] = value, flag
    return names.pop(), options, given


def items_from_args(args, *, required: bool = True, **defaults):
    """The items the command line names (``add_source_args``), or None when it names none and not
    ``required``. ``defaults``: options the caller sets when the source takes them (e.g. ``item_id``)."""
    request = source_request(args)
    if request is None:
        if required:
            raise DdtseError("give the items: --source NAME [--source_opt KEY=VALUE ...] or one of "
                             + ", ".join(getattr(args, "source_shorthands", ())))
        return None
    name, options, given = request
    return list_items(name, options, defaults, given)


def source_parameters(name: str) -> dict[str, inspect.Parameter]:
    """The options source ``name`` takes (its lister's keyword parameters)."""
    lister = SOURCES.get(name)
    return {k: p for k, p in inspect.signature(lister).parameters.items()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def list_items(name: str, options: dict, defaults: dict | None = None, given: dict | None = None) -> list:
    """The items of source ``name`` with ``options`` (text values are typed by the lister's defaults)."""
    lister = SOURCES.get(name)
    params = source_parameters(name)
    given = given or {}
    unknown = [k for k in options if k not in params]
    if unknown:
        where = ", ".join(given.get(k, k) for k in unknown)
        raise DdtseError(f"source '{name}' takes no {where} (its options: {', '.join(params)})")
    kwargs = {k: v for k, v in (defaults or {}).items() if k in params}
    kwargs.update({k: _typed(name, k, v, params[k]) for k, v in options.items()})
    missing = [k for k, p in params.items() if p.default is inspect.Parameter.empty and k not in kwargs]
    if missing:
        raise DdtseError(f"source '{name}' needs {', '.join(missing)} (--source_opt {missing[0]}=...)")
    items = lister(**kwargs)
    if not isinstance(items, list):
        raise TypeError(f"source '{name}' returned {type(items).__name__}, not a list of items")
    return items


def _typed(source: str, key: str, value, param: inspect.Parameter):
    """A command-line text ``value`` as the type of the parameter's default (bool, int, float)."""
    if not isinstance(value, str) or param.default is inspect.Parameter.empty or param.default is None:
        return value
    kind = type(param.default)
    try:
        if kind is bool:
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(value)
            return value.lower() in ("true", "1", "yes")
        if kind in (int, float):
            return kind(value)
    except ValueError:
        raise DdtseError(f"source '{source}' option {key}={value}: {key} takes a {kind.__name__}") from None
    return value
