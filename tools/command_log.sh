# Sourced by the recipes after $exp and $stage are set and $exp exists: every command run through
# `run` is printed and appended to $exp/commands.txt, and its wall time to $exp/timings.tsv
# (seconds, tab, command); a run from stage 0 starts both afresh.
commands="$exp/commands.txt"
timings="$exp/timings.tsv"
[ "$stage" -le 0 ] && : > "$commands" && : > "$timings"
run() {  # print, record, run and time a command
  echo "$*" >> "$commands"
  echo "+ $*" >&2
  local start=$SECONDS rc=0
  "$@" || rc=$?
  printf '%s\t%s\n' "$(( SECONDS - start ))" "$*" >> "$timings"
  return "$rc"
}
