"""Extract a target speaker with a trained checkpoint; see ddtse/cli/infer.py."""
import sys

from ddtse.cli import run_cli
from ddtse.cli.infer import main

sys.exit(run_cli(main))
