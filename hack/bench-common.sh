# shellcheck shell=sh
# Sourced by bench.sh and density.sh, which set $work (their scratch directory) and $names
# (the runtimes, each with its binary in $bin_NAME and its state root in $work/root-NAME).
#
# bench_scratch PREFIX: a new scratch directory on a tmpfs of its own, for the bundles, the state
# roots and the pid files. On a standard host a runtime's state lives in /run, a tmpfs; the
# machines tally is measured on have /run and /tmp on ext4, whose inode allocator makes each
# new file cost more as a run goes on (docs/performance.md, 2026-12-07: density on tmpfs).
# The scripts run in a private mount namespace, so the mount ends with them.
bench_scratch() {
  d=$(mktemp -d "/tmp/$1.XXXXXX")
  mount -t tmpfs -o mode=700 "$1" "$d"
  echo "$d"
}

# bench_cleanup: a failed benchmark (set -e) must not leave containers or their cgroups
# behind: whatever is left in a runtime's state root is force-deleted by that runtime.
bench_cleanup() {
  for name in $names; do
    eval "bin=\$bin_$name"
    for id in $(ls "$work/root-$name" 2>/dev/null); do
      "$bin" --root "$work/root-$name" delete --force "$id" >/dev/null 2>&1 || true
    done
  done
  umount "$work" 2>/dev/null || true
  rm -rf "$work"
}
