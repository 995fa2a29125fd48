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

# containers_conf FILE [CONTAINERS_LINES]: a private Podman's containers.conf with tally as its
# runtime ($tally): no network, cgroupfs, file events, tally's JSON log read for errors;
# CONTAINERS_LINES go into [containers] before them.
containers_conf() {
  cat > "$1" <<CONF
[containers]
${2:-}
netns = "none"
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "tally"
# Podman then passes --log-format json and shows tally's error once, from the log.
runtime_supports_json = ["tally", "crun", "runc"]
runtime_supports_kvm = []
[engine.runtimes]
tally = ["$tally"]
CONF
}

# start_containerd: a private containerd in $work (its own socket $sock, root, state, the CRI
# plugin off), running as $daemon once its socket answers; exits the script if it does not.
start_containerd() {
  cat > "$work/config.toml" <<CONF
version = 2
root = "$work/root"
state = "$work/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$sock"
[ttrpc]
  address = "$sock.ttrpc"
[debug]
  address = "$work/debug.sock"
CONF
  containerd --config "$work/config.toml" > "$work/containerd.log" 2>&1 &
  daemon=$!
  i=0
  while [ ! -S "$sock" ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
  [ -S "$sock" ] || { echo "containerd did not start:"; cat "$work/containerd.log"; exit 1; }
}

# stop_containerd ID...: the containers ID... and their tasks removed, the daemon of
# start_containerd stopped, the namespace's parent cgroup (ctr puts containers in
# /<namespace>/<id>: tally removes <id>, the parent is ours), containerd's mounts (snapshots)
# under $work and $work itself removed. For the scripts' EXIT traps.
stop_containerd() {
  for id in "$@"; do
    ctr task kill -s KILL "$id" >/dev/null 2>&1
    ctr task delete --force "$id" >/dev/null 2>&1
    ctr container delete "$id" >/dev/null 2>&1
  done
  kill "${daemon:-}" 2>/dev/null
  wait "${daemon:-}" 2>/dev/null
  find /sys/fs/cgroup -maxdepth 2 -type d -name "$ns" -exec rmdir {} \; 2>/dev/null
  grep " $work" /proc/self/mountinfo | awk '{print $5}' | sort -r | while read -r m; do umount "$m" 2>/dev/null; done
  rm -rf "$work"
}

# counted CMD...: CMD's output (with its errors) once it is a number: at most 20 tries, 0.05 s
# apart, then the last output for the failure message. The counters write `echo $i > /count`,
# which empties the file before it writes the number: a read in that gap gets nothing.
counted() {
  ctries=0
  while :; do
    cout=$("$@" 2>&1)
    case $cout in ''|*[!0-9]*) ;; *) echo "$cout"; return 0 ;; esac
    ctries=$((ctries + 1))
    [ $ctries -lt 20 ] || { echo "$cout"; return 0; }
    sleep 0.05
  done
}

# wait_count C N: until `count_of C` (the calling script's: the counter's value read inside
# container C) passes N; at most 100 tries, 0.2 s apart. Non-zero if it never does.
wait_count() {
  tries=0
  while [ $tries -lt 100 ]; do
    c=$(count_of "$1")
    case $c in ''|*[!0-9]*) ;; *) [ "$c" -gt "$2" ] && return 0 ;; esac
    sleep 0.2; tries=$((tries + 1))
  done
  return 1
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
