#!/bin/sh
# podman-checkpoint.sh TALLY: `podman container checkpoint` and `restore` with tally as the
# runtime, as an operator uses them: a detached counter (stdin /dev/null and stdout a pipe to
# conmon, as Podman sets them) is checkpointed, restored in place and goes on counting;
# checkpointed with --export, removed, and restored from the tarball with --import under
# another name; checkpointed with --leave-running; bad input refused. Nothing is left behind.
# Needs a kernel CRIU can dump on: run in the VM by hack/vm-e2e.sh.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
tally=$(realpath "$1")
work=$(mktemp -d /tmp/tally-e2e-podman-cr.XXXXXX)
make_rootfs "$work/rootfs"
containers_conf "$work/containers.conf"
export CONTAINERS_CONF="$work/containers.conf"
# shellcheck disable=SC2046  # podman_flags' words are meant to split (paths without spaces)
podman() { command podman $(podman_flags) "$@"; }
cleanup() {
  podman rm --force --all >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT
status_of() { podman inspect --format '{{.State.Status}}' "$1" 2>&1; }
count_of() { counted podman exec "$1" cat /count; }

echo "== podman $(command podman --version | awk '{print $3}') container checkpoint/restore, --runtime $tally"
# An image, so that --export can carry the container's root filesystem changes.
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .
expect_status "podman import of a busybox image" 0 podman import "$work/rootfs.tar" localhost/tally-busybox
counter='i=0; while :; do i=$((i + 1)); echo tick $i; echo $i > /count; sleep 0.1; done'
expect_status "podman run -d of a counter" 0 podman run -d --name cr1 localhost/tally-busybox sh -c "$counter"
wait_count cr1 40 || fail "the counter did not start: $(count_of cr1)"
pid1=$(podman exec cr1 cat /proc/1/cmdline | tr '\0' ' ')
# A restart from 0 would be far below this after the second or so a restore and an exec take.
c0=$(count_of cr1)

expect_status "podman container checkpoint" 0 podman container checkpoint cr1
expect_eq "the checkpointed container has exited" exited "$(status_of cr1)"
expect_eq "tally holds no container while it is checkpointed" "" "$("$tally" list -q)"
expect_status "podman container restore" 0 podman container restore cr1
expect_eq "the restored container runs" running "$(status_of cr1)"
at=$(count_of cr1)
case $at in ''|*[!0-9]*) fail "no count after restore: $at"; at=0 ;; esac
[ "$at" -ge "$c0" ] && ok "the counter continues from where it was ($c0 -> $at)" || fail "the counter restarted: $at after $c0"
wait_count cr1 "$at" && ok "the counter goes on after restore" || fail "the counter stopped at $at"
after=$(count_of cr1)
expect_eq "PID 1 is the same program" "$pid1" "$(podman exec cr1 cat /proc/1/cmdline | tr '\0' ' ')"
expect_contains "its output still reaches Podman's log" "tick $after" "$(sleep 0.5; podman logs cr1 2>&1)"

c0=$(count_of cr1)
expect_status "podman container checkpoint --export" 0 podman container checkpoint --export "$work/cr1.tar.gz" cr1
expect_status "podman rm of the checkpointed container" 0 podman rm cr1
expect_status "podman container restore --import --name cr2" 0 \
  podman container restore --import "$work/cr1.tar.gz" --name cr2
expect_eq "the imported container runs" running "$(status_of cr2)"
at=$(count_of cr2)
wait_count cr2 "$at" && ok "the imported counter goes on" || fail "the imported counter stopped at $at"
case $at in ''|*[!0-9]*) fail "no count in the imported container: $at" ;;
  *) [ "$at" -ge "$c0" ] && ok "the imported counter continues from the exported one ($c0 -> $at)" || fail "the imported counter restarted: $at after $c0" ;;
esac

expect_status "podman container checkpoint --leave-running" 0 podman container checkpoint --leave-running cr2
expect_eq "the container is still running" running "$(status_of cr2)"
at=$(count_of cr2)
wait_count cr2 "$at" && ok "and still counting" || fail "it stopped counting at $at"

expect_status "podman stop" 0 podman stop --time 1 cr2
expect_status "checkpoint of a stopped container is refused" 125 podman container checkpoint cr2
expect_contains "saying why" "not running" "$out"
expect_status "restore --import of a missing archive is refused" 125 \
  podman container restore --import "$work/no-such.tar.gz"
printf 'not a tarball' > "$work/corrupt.tar.gz"
expect_status "restore --import of a corrupt archive is refused" 125 \
  podman container restore --import "$work/corrupt.tar.gz" --name cr3
expect_eq "no container was created from it" "" "$(podman ps -a --filter name=cr3 -q)"
expect_status "podman rm" 0 podman rm cr2

expect_eq "tally holds no container" "" "$("$tally" list -q)"
left=$(find /sys/fs/cgroup -name 'libpod-*' -type d 2>/dev/null)
expect_eq "no container cgroup is left" "" "$left"
finish podman-checkpoint
