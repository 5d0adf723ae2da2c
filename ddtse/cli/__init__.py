"""Command-line entry points: argument parsing only; logic lives in the package."""
from __future__ import annotations

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
