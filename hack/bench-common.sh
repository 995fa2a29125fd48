# shellcheck shell=sh
# Sourced by bench.sh and density.sh, which set $work (their scratch directory) and $names
# (the runtimes, each with its binary in $bin_NAME and its state root in $work/root-NAME).
#
# bench_cleanup: a failed benchmark (set -e) must not leave containers or their cgroups
# behind: whatever is left in a runtime's state root is force-deleted by that runtime.
bench_cleanup() {
  for name in $names; do
    eval "bin=\$bin_$name"
    for id in $(ls "$work/root-$name" 2>/dev/null); do
      "$bin" --root "$work/root-$name" delete --force "$id" >/dev/null 2>&1 || true
    done
  done
  rm -rf "$work"
}
