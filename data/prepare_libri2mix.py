#!/usr/bin/env python
"""Thin wrapper: see ddtse/cli/prepare.py (prepare_libri2mix_main)."""
import sys

from ddtse.cli.prepare import prepare_libri2mix_main

if __name__ == "__main__":
    sys.exit(prepare_libri2mix_main())
