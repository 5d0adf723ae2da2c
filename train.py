"""Train an extractor; see ddtse/cli/train.py."""
import sys

from ddtse.cli import run_cli
from ddtse.cli.train import main

sys.exit(run_cli(main))
