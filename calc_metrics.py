"""Score extracted speech (SI-SDR(i), PESQ, ESTOI, confusion/acceptance, DNSMOS, speaker similarity); see ddtse/cli/score.py."""
import sys

from ddtse.cli import run_cli
from ddtse.cli.score import main

sys.exit(run_cli(main))
