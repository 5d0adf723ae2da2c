"""Cut long recordings into training clips at silences; see ddtse/cli/slicer.py."""
import sys

from ddtse.cli import run_cli
from ddtse.cli.slicer import main

sys.exit(run_cli(main))
