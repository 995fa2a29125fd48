#!/bin/sh
# containerd.sh TALLY: a private containerd (its own socket, root and state in a temp dir, the
# CRI plugin off) drives tally through its runc shim (`ctr run --runc-binary`), as containerd
# does in production: run to completion, detached run + exec + kill + delete, pause/resume,
# metrics, failing creates (126/127 classes), a session of its own, tmpcopyup, the hybrid
# host's name=systemd cgroup, the shim's features probe. Nothing is left behind.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
tally=$(realpath "$1")
work=$(mktemp -d /tmp/tally-e2e-containerd.XXXXXX)
sock="$work/containerd.sock"
ns=tally-e2e
image=docker.io/library/tally-busybox:latest
runc_root=/run/containerd/runc/$ns
cleanup() { stop_containerd e2e-run e2e-detached e2e-fail e2e-noexec e2e-sid e2e-copyup e2e-hybrid; }
trap cleanup EXIT
start_containerd
ctr() { command ctr --address "$sock" --namespace "$ns" "$@"; }

echo "== containerd $(containerd --version | awk '{print $3}'), ctr run --runc-binary $tally"
make_rootfs "$work/rootfs"
"$here/oci-image.sh" "$work/rootfs" "$work/image.tar" "$image"
expect_status "ctr image import of a local OCI tarball" 0 ctr image import "$work/image.tar"

# 1. Run to completion: output and exit status come back through the shim.
expect_status "ctr run --rm returns the container's exit status (3)" 3 \
  ctr run --rm --runc-binary "$tally" "$image" e2e-run sh -c 'echo hello from tally; exit 3'
expect_contains "ctr run --rm prints the container's output" "hello from tally" "$out"

# 2. Detached: exec, pause/resume, metrics, kill, delete.
expect_status "ctr run -d" 0 ctr run -d --runc-binary "$tally" "$image" e2e-detached sleep 300
expect_status "ctr task exec runs a process in the container" 0 \
  ctr task exec --exec-id e1 e2e-detached sh -c 'echo exec-ok; cat /proc/1/cmdline | tr "\0" " "'
expect_contains "the exec saw the container's init" "exec-ok" "$out"
expect_contains "the exec shares the pid namespace (PID 1 is sleep)" "sleep 300" "$out"
expect_status "ctr task exec returns the process's status (5)" 5 ctr task exec --exec-id e2 e2e-detached sh -c 'exit 5'
expect_status "ctr task pause" 0 ctr task pause e2e-detached
expect_contains "the task is PAUSED" "PAUSED" "$(ctr task ls)"
expect_contains "tally reports it paused" '"status": "paused"' "$("$tally" --root "$runc_root" state e2e-detached 2>&1)"
expect_status "ctr task resume" 0 ctr task resume e2e-detached
expect_contains "the task is RUNNING again" "RUNNING" "$(ctr task ls)"
# (A mounted memory hierarchy, not a directory: conmon may mkdir one in the sandbox's tmpfs.)
if grep -q ' - cgroup [^ ]* [^ ]*memory' /proc/self/mountinfo || [ -e /sys/fs/cgroup/cgroup.controllers ]; then
  expect_status "ctr task metrics" 0 ctr task metrics e2e-detached
  expect_contains "metrics show the container's pids cgroup" "pids" "$out"
else
  # The shim loads every v1 hierarchy the process is in (/proc/PID/cgroup) and fails on the
  # memory one the sandbox hides; runc fails the same way here.
  skip "ctr task metrics" "the host sandbox hides the v1 memory hierarchy, which containerd's shim loads (runc fails the same way here)"
fi
expect_status "ctr task kill -s KILL" 0 ctr task kill -s KILL e2e-detached
i=0
while ! ctr task ls | grep e2e-detached | grep -q STOPPED && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
expect_contains "the task is STOPPED" "STOPPED" "$(ctr task ls)"
expect_status "ctr task delete" 0 ctr task delete e2e-detached
expect_status "ctr container delete" 0 ctr container delete e2e-detached

# 3. A failing create: tally's own message reaches the user through the shim (log.json).
expect_status "ctr run of a missing program fails" 1 \
  ctr run --rm --runc-binary "$tally" "$image" e2e-fail /no/such/program
expect_contains "the error is tally's, read from its JSON log" "/no/such/program" "$out"
ctr container delete e2e-fail >/dev/null 2>&1

expect_status "ctr run of a program that is not executable fails" 1 \
  ctr run --rm --runc-binary "$tally" "$image" e2e-noexec /etc/passwd
expect_contains "the error says permission denied" "permission denied" "$out"
ctr container delete e2e-noexec >/dev/null 2>&1

# 4. What runc gives every container: its own session, tmpcopyup, name=systemd on hybrid hosts.
expect_status "ctr run: the init leads its own session" 0 \
  ctr run --rm --runc-binary "$tally" "$image" e2e-sid sh -c 'exec cut -d" " -f1,6 /proc/self/stat'
expect_eq "pid and session id are both 1" "1 1" "$(printf '%s' "$out" | tr -d '\r')"
expect_status "ctr run --mount type=tmpfs with tmpcopyup" 0 \
  ctr run --rm --runc-binary "$tally" --mount type=tmpfs,src=tmpfs,dst=/etc,options=rw:tmpcopyup \
  "$image" e2e-copyup sh -c 'head -1 /etc/passwd; grep " /etc " /proc/self/mounts'
expect_contains "the image's /etc/passwd is in the tmpfs" "root:x:0:0" "$out"
expect_contains "/etc is a tmpfs" "/etc tmpfs" "$out"
if [ -e /sys/fs/cgroup/systemd/cgroup.procs ] && [ ! -e /sys/fs/cgroup/cgroup.controllers ]; then
  expect_status "ctr run on a hybrid host" 0 \
    ctr run --rm --runc-binary "$tally" "$image" e2e-hybrid cat /proc/self/cgroup
  # (containerd 1.6's default spec mounts no cgroup filesystem: /proc/self/cgroup is what shows.)
  expect_contains "the container has a name=systemd cgroup of its own" "name=systemd:/$ns/e2e-hybrid" "$out"
  expect_contains "and one in the unified hierarchy" "0::/$ns/e2e-hybrid" "$out"
else
  skip "ctr run on a hybrid host" "no name=systemd hierarchy next to v1 controllers here"
fi

# 5. The shim's features probe (containerd 1.7 and later; 1.6's shim has no -info).
if containerd-shim-runc-v2 -info >/dev/null 2>&1; then
  expect_status "containerd-shim-runc-v2 -info accepts tally's features" 0 \
    env PATH="$(dirname "$tally"):$PATH" containerd-shim-runc-v2 -info
else
  skip "the shim's -info features probe" "containerd $(containerd --version | awk '{print $3}')'s shim has none (1.7 added it); tally features is tested in commands.rs"
fi

# Nothing left: no tally container, no cgroup, no shim.
expect_eq "tally has no containers left" "" "$("$tally" --root "$runc_root" list -q 2>/dev/null)"
expect_eq "no cgroup of the test containers remains" "" "$(cgroups_named 'e2e-*')"
cleanup
trap - EXIT
expect_eq "no cgroup of the namespace remains" "" "$(cgroups_named "$ns")"
expect_eq "no shim remains" "" "$(pgrep -f "containerd-shim-runc-v2.*$ns" || true)"
# The shim's tally root for this namespace (its ledger included) was this run's alone.
rm -rf "$runc_root"
rmdir /run/containerd/runc /run/containerd/fifo /run/containerd/s /run/containerd 2>/dev/null
expect_eq "no tally state of the namespace remains" "no" "$([ -e "$runc_root" ] && echo yes || echo no)"
finish containerd
