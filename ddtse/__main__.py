"""``python -m ddtse VERB ...``: the ``ddtse`` command (ddtse/cli/main.py)."""
import sys

from ddtse.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
