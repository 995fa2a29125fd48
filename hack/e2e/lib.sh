# lib.sh: assertions for the end-to-end scripts. Each check prints "ok" or "FAIL" with what it
# saw; `finish` prints the summary and exits non-zero if anything failed.
failures=0
checks=0

ok() { checks=$((checks + 1)); echo "  ok: $1"; }
fail() { checks=$((checks + 1)); failures=$((failures + 1)); echo "  FAIL: $1"; }

# expect_eq WHAT EXPECTED ACTUAL
expect_eq() {
  if [ "$2" = "$3" ]; then ok "$1"; else fail "$1: expected [$2], got [$3]"; fi
}

# expect_contains WHAT NEEDLE HAYSTACK
expect_contains() {
  case $3 in
    *"$2"*) ok "$1" ;;
    *) fail "$1: [$2] not in [$3]" ;;
  esac
}

# expect_status WHAT EXPECTED_STATUS CMD...: runs CMD, compares its exit status; its output is
# kept in $out (stdout and stderr together).
expect_status() {
  what=$1
  want=$2
  shift 2
  out=$("$@" 2>&1)
  got=$?
  if [ "$got" = "$want" ]; then ok "$what"; else fail "$what: exit status $got, expected $want; output: $out"; fi
}

# The flags of a private Podman: storage, run root and temp dir under $work, vfs, file events,
# cgroupfs, and --runtime $tally ($work and $tally are the calling script's).
podman_flags() {
  echo --root "$work/storage" --runroot "$work/run" --tmpdir "$work/tmp" \
    --storage-driver vfs --events-backend file --cgroup-manager cgroupfs --runtime "$tally"
}

# A busybox root filesystem in DIR (what the images and --rootfs runs use).
make_rootfs() {
  "$(dirname "$0")/../make-rootfs.sh" "$1"
}

# Cgroup directories named NAME anywhere in the host's hierarchies.
cgroups_named() {
  find /sys/fs/cgroup -maxdepth 6 -type d -name "$1" 2>/dev/null
}

# skip WHAT REASON: said, and recorded with the tests' skips (make test lists them).
skip() {
  echo "  (skipped: $1: $2)"
  if [ -n "${TALLY_SKIP_LOG:-}" ]; then echo "e2e: $1: $2" >> "$TALLY_SKIP_LOG"; fi
}

finish() {
  echo "== $1: $((checks - failures)) of $checks checks passed"
  [ "$failures" = 0 ]
}
