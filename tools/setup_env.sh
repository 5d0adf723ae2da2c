#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and print its python path on stdout.
#   * keeps a torch the user already has (a CUDA build, say): the venv then sees system packages;
#   * otherwise installs torch==${DDTSE_TORCH_VERSION:-2.13.0}, taking the CPU build when the
#     default wheel would pull CUDA packages onto a machine without an NVIDIA GPU;
#   * idempotent: a stamp of requirements.txt makes a second run take well under a second.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${DDTSE_VENV:-$root/.venv}"
py_host="${PYTHON:-python3}"
torch_version="${DDTSE_TORCH_VERSION:-2.13.0}"
stamp="$venv/.ddtse-requirements.sha256"
hash_cmd=(sha256sum); command -v sha256sum >/dev/null 2>&1 || hash_cmd=(shasum -a 256)
want="$(cat "$root/requirements.txt" "$root/pyproject.toml" "${BASH_SOURCE[0]}" | "${hash_cmd[@]}" | cut -d' ' -f1)"

log() { echo "[setup_env] $*" >&2; }

# An environment of your own (a cluster module, a container, the GPU check's machine): use it as is.
if [ -n "${DDTSE_PYTHON:-}" ]; then
  "$DDTSE_PYTHON" -c 'import torch, lightning' 2>/dev/null \
    || { log "DDTSE_PYTHON=$DDTSE_PYTHON cannot import torch and lightning"; exit 1; }
  echo "$DDTSE_PYTHON"; exit 0
fi

if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "$venv/bin/python"; exit 0
fi

"$py_host" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
  || { log "Python 3.10 or newer is required (found $("$py_host" --version 2>&1))."; exit 1; }

if [ ! -x "$venv/bin/python" ]; then
  if "$py_host" -c 'import torch' 2>/dev/null; then
    log "reusing the torch installed for $py_host ($("$py_host" -c 'import torch; print(torch.__version__)'))"
    "$py_host" -m venv --system-site-packages "$venv"
  else
    "$py_host" -m venv "$venv"
  fi
fi
pip=("$venv/bin/python" -m pip install --disable-pip-version-check -q)
quiet() { "$@" 2> >(grep -v "^WARNING: Location" >&2) >&2; }  # stdout is for the python path only

if ! "$venv/bin/python" -c 'import torch' 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 || [ "$(uname -s)" != "Linux" ]; then
    log "installing torch==$torch_version"
    quiet "${pip[@]}" "torch==$torch_version"
  elif "$venv/bin/python" -m pip install --dry-run --disable-pip-version-check "torch==$torch_version" 2>/dev/null \
      | grep -q "nvidia"; then
    log "no NVIDIA GPU: installing the CPU build of torch==$torch_version"
    quiet "${pip[@]}" "torch==$torch_version" --index-url "https://download.pytorch.org/whl/cpu"
  else
    log "installing torch==$torch_version (CPU build)"
    quiet "${pip[@]}" "torch==$torch_version"
  fi
fi

log "installing requirements (first run only; about a minute)"
quiet "${pip[@]}" -r "$root/requirements.txt"
quiet "${pip[@]}" --no-deps -e "$root"
echo "$want" > "$stamp"
echo "$venv/bin/python"
