"""Score extracted speech (PESQ, ESTOI, SI-SDR, SI-SDRi); see ddtse/cli/score.py."""
import sys

from ddtse.cli import run_cli
from ddtse.cli.score import main

sys.exit(run_cli(main))
