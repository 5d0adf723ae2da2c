#!/usr/bin/env bash
# Kaldi-style option parsing for recipes: `--name value` (or --name=value) sets the shell variable
# `name` (dashes become underscores) if the recipe defined it; unknown options are an error (exit 2).
# Source it after the defaults:  . tools/parse_options.sh
# --help prints the recipe's leading comment block, then its options with their defaults (the
# `name=value` lines above this file's `. tools/parse_options.sh` line).
while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h)
      _script="$0"; [ -r "$_script" ] || _script="${OLDPWD:-.}/$0"  # a recipe may cd before sourcing this
      sed -n '2,/^[^#]/{/^#/{s/^# \{0,1\}//;p;};}' "$_script"
      echo "options (defaults):"
      sed -n '/^\. .*parse_options\.sh/q; /^[a-zA-Z_][a-zA-Z_0-9]*=/{s/^/  --/;s/=/ /;p;}' "$_script"
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
