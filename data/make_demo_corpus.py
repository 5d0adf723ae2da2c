#!/usr/bin/env python
"""Thin wrapper: see ddtse/cli/prepare.py (make_demo_corpus_main)."""
import sys

from ddtse.cli.prepare import make_demo_corpus_main

if __name__ == "__main__":
    sys.exit(make_demo_corpus_main())
