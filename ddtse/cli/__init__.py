"""Command-line entry points: argument parsing only; logic lives in the package."""
from __future__ import annotations

import argparse
import sys
import warnings
from typing import Callable

from ddtse.errors import DdtseError


def run_cli(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> int:
    """Run ``main``; a DdtseError becomes one line on stderr and exit code 2."""
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    try:
        code = main(argv)
    except DdtseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


def rename_legacy_options(argv: list[str], aliases: dict[str, str]) -> list[str]:
    """``argv`` with old option spellings replaced by the current ones, before argparse sees it.

    ``aliases`` maps an old spelling to its current one, e.g. ``{"--sample-rate": "--sample_rate",
    "--out": "--out_dir"}``; both ``--old VALUE`` and ``--old=VALUE`` are rewritten, nothing after
    a bare ``--``. The old spellings keep working but are not options of the parser, so ``--help``
    shows only the current names.
    """
    out = list(argv)
    for i, arg in enumerate(out):
        if arg == "--":
            break
        name, sep, value = arg.partition("=")
        if name in aliases:
            out[i] = aliases[name] + sep + value
    return out


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser that also takes the old spellings in ``legacy`` (see rename_legacy_options).

    One name per meaning across the command line: underscores inside option names, ``--out_dir``
    for an output folder, ``--output`` for an output file.
    """

    def __init__(self, *args, legacy: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.legacy = dict(legacy or {})

    def parse_known_args(self, args=None, namespace=None):
        args = sys.argv[1:] if args is None else list(args)
        return super().parse_known_args(rename_legacy_options(args, self.legacy), namespace)
