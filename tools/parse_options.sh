#!/usr/bin/env bash
# Kaldi-style option parsing for recipes: `--name value` (or --name=value) sets the shell variable
# `name` (dashes become underscores) if the recipe defined it; unknown options are an error.
# Source it after the defaults:  . tools/parse_options.sh
while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h)
      echo "options (current values):" >&2
      grep -E '^[a-z_0-9]+=' "$0" | sed 's/^/  --/; s/=/ /' >&2
      exit 0 ;;
    --*=*) name="${1%%=*}"; value="${1#*=}"; shift ;;
    --*)
      name="$1"
      if [ $# -lt 2 ]; then echo "error: option $1 needs a value" >&2; exit 2; fi
      value="$2"; shift 2 ;;
    *) break ;;
  esac
  name="${name#--}"; name="${name//-/_}"
  if ! declare -p "$name" >/dev/null 2>&1; then
    echo "error: unknown option --$name (see --help)" >&2; exit 2
  fi
  printf -v "$name" '%s' "$value"
done
