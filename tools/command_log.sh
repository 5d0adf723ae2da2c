# Sourced by the recipes after $exp and $stage are set and $exp exists: every command run through
# `run` is printed and appended to $exp/commands.txt (a run from stage 0 starts a fresh log).
commands="$exp/commands.txt"
[ "$stage" -le 0 ] && : > "$commands"
run() {  # print, record and run a command
  echo "$*" >> "$commands"
  echo "+ $*" >&2
  "$@"
}
