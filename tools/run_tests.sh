#!/usr/bin/env bash
# Run the test suite (creates .venv on first use). Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="$(bash tools/setup_env.sh)"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" PYTHONDONTWRITEBYTECODE=1
exec "$python" -m pytest -p no:cacheprovider --durations=15 "$@"
