# Sourced by the recipes after $exp and $stage are set and $exp exists: every command run through
# `run` is printed and appended to $exp/commands.txt, and its wall time to $exp/timings.tsv
# (seconds, tab, command); a run from stage 0 starts both afresh. Arguments with spaces or quotes
# are logged single-quoted, so a logged line runs as it stands.
commands="$exp/commands.txt"
timings="$exp/timings.tsv"
[ "$stage" -le 0 ] && : > "$commands" && : > "$timings"
quote_args() {  # the arguments as one shell line, quoting only those that need it
  local out="" arg q="'"
  for arg in "$@"; do
    if [[ "$arg" =~ ^[A-Za-z0-9_./=:,+@%-]+$ ]]; then out+=" $arg"
    else out+=" '${arg//$q/$q\\$q$q}'"; fi
  done
  printf '%s' "${out# }"
}
run() {  # print, record, run and time a command
  local line start=$SECONDS rc=0
  line="$(quote_args "$@")"
  echo "$line" >> "$commands"
  echo "+ $line" >&2
  "$@" || rc=$?
  printf '%s\t%s\n' "$(( SECONDS - start ))" "$line" >> "$timings"
  return "$rc"
}
