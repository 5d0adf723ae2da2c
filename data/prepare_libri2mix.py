#!/usr/bin/env python
"""Thin wrapper: see ddtse/cli/prepare.py (prepare_libri2mix_main)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: runs without an installed package
from ddtse.cli.prepare import prepare_libri2mix_main

if __name__ == "__main__":
    sys.exit(prepare_libri2mix_main())
