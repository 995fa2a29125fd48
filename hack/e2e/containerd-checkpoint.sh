#!/bin/sh
# containerd-checkpoint.sh TALLY: containerd's checkpoint and restore through its runc shim
# driving tally (`ctr run --runc-binary`): `ctr task checkpoint --image-path` of a running
# counter (the shim runs `tally checkpoint`, the task keeps running), then `ctr containers
# checkpoint --task` into a checkpoint image and `ctr containers restore --live` of it as a new
# container, whose counter continues; bad input refused. Nothing is left behind. Needs a
# kernel CRIU can dump on: run in the VM by hack/vm-e2e.sh.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
tally=$(realpath "$1")
work=$(mktemp -d /tmp/tally-e2e-containerd-cr.XXXXXX)
sock="$work/containerd.sock"
ns=tally-e2e
image=docker.io/library/tally-busybox:latest
runc_root=/run/containerd/runc/$ns
ctr() { command ctr --address "$sock" --namespace "$ns" "$@"; }
cleanup() { stop_containerd cr-run cr-restored; }
trap cleanup EXIT
start_containerd
# (Each exec needs an id of its own; these run in subshells, so no counter: a random one.)
ctr_bin=$(command -v ctr)
# Each try is an exec of its own, with an id of its own.
count_once() { timeout 60 "$ctr_bin" --address "$sock" --namespace "$ns" task exec --exec-id "count-$(cat /proc/sys/kernel/random/uuid)" "$1" cat /count; }
count_of() { counted count_once "$1"; }

echo "== containerd $(containerd --version | awk '{print $3}') checkpoint/restore, ctr run --runc-binary $tally"
make_rootfs "$work/rootfs"
"$here/oci-image.sh" "$work/rootfs" "$work/image.tar" "$image"
expect_status "ctr image import" 0 ctr image import "$work/image.tar"
counter='i=0; while :; do i=$((i + 1)); echo $i > /count; sleep 0.1; done'
expect_status "ctr run -d of a counter" 0 ctr run -d --runc-binary "$tally" "$image" cr-run sh -c "$counter"
wait_count cr-run 40 || fail "the counter did not start: $(count_of cr-run)"

expect_status "ctr task checkpoint --image-path (the shim runs tally checkpoint)" 0 \
  ctr task checkpoint --image-path "$work/images" cr-run
expect_eq "CRIU's images are there" yes "$([ -s "$work/images/inventory.img" ] && echo yes || echo no)"
expect_contains "tally recorded the checkpoint" '"id": "cr-run"' "$(cat "$work/images/tally-checkpoint.json" 2>&1)"
expect_contains "the task keeps running" RUNNING "$(ctr task ls)"
at=$(count_of cr-run)
wait_count cr-run "$at" && ok "and counting" || fail "it stopped counting at $at"

c0=$(count_of cr-run)
expect_status "ctr containers checkpoint --task into a checkpoint image" 0 \
  ctr containers checkpoint --task --rw cr-run tally-e2e/cr-run:checkpoint
expect_contains "the checkpoint image is listed" "tally-e2e/cr-run:checkpoint" "$(ctr image ls -q)"
expect_status "ctr task kill of the original" 0 ctr task kill -s KILL cr-run
i=0
while ! ctr task ls | grep cr-run | grep -q STOPPED && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
expect_status "ctr task delete of the original" 0 ctr task delete cr-run
expect_status "ctr containers restore --live --rw as a new container" 0 \
  ctr containers restore --live --rw cr-restored tally-e2e/cr-run:checkpoint
expect_contains "the restored task runs" RUNNING "$(ctr task ls | grep cr-restored)"
expect_contains "tally reports it running" '"status": "running"' "$("$tally" --root "$runc_root" state cr-restored 2>&1)"
at=$(count_of cr-restored)
case $at in ''|*[!0-9]*) fail "no count in the restored container: $at"; at=0 ;; esac
[ "$at" -ge "$c0" ] && ok "the restored counter continues from where it was ($c0 -> $at)" || fail "the counter restarted: $at after $c0"
wait_count cr-restored "$at" && ok "the restored counter goes on" || fail "the restored counter stopped at $at"

expect_status "ctr containers restore of a missing checkpoint is refused" 1 \
  ctr containers restore --live cr-none tally-e2e/no-such:checkpoint
expect_status "ctr task kill" 0 ctr task kill -s KILL cr-restored
i=0
while ! ctr task ls | grep cr-restored | grep -q STOPPED && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
expect_status "ctr task delete" 0 ctr task delete cr-restored
expect_status "ctr container delete" 0 ctr container delete cr-restored
ctr container delete cr-run >/dev/null 2>&1
expect_eq "tally holds no container" "" "$("$tally" --root "$runc_root" list -q 2>/dev/null)"
expect_eq "no container cgroup is left" "" "$(find /sys/fs/cgroup -type d \( -name cr-run -o -name cr-restored \) 2>/dev/null)"
finish containerd-checkpoint
