#!/usr/bin/env python
"""Thin wrapper: see ddtse/cli/prepare.py (make_extr_lists_main)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: runs without an installed package
from ddtse.cli.prepare import make_extr_lists_main

if __name__ == "__main__":
    sys.exit(make_extr_lists_main())
