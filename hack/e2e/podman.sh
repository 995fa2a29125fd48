#!/bin/sh
# podman.sh TALLY: Podman (as root, cgroupfs, file events, no network, its storage in a temp
# dir) runs busybox root filesystems with `--runtime TALLY --rootfs`: run --rm with output and
# exit code, detached run + exec + exec -t + pause/unpause + update + stop + rm, run -t, and a
# missing program whose error (tally's, from its JSON log) Podman shows once; then what runc
# users rely on: --read-only and --tmpfs (tmpcopyup), --memory discarded on a host without the
# controller, --device with read-only access, --timeout, and 126/127 for programs that cannot
# run. Nothing is left behind.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
tally=$(realpath "$1")
work=$(mktemp -d /tmp/tally-e2e-podman.XXXXXX)
make_rootfs "$work/rootfs"
# Podman's default nofile limit (1048576) needs CAP_SYS_RESOURCE, which this host withholds.
containers_conf "$work/containers.conf" 'default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]'
export CONTAINERS_CONF="$work/containers.conf"
# Podman as root passes tally no --root: its state is /run/tally, shared with other users of
# tally. What this run adds there (ledger lines, the root itself) is taken back at the end.
ledger=/run/tally/.beancounters-ledger.jsonl
had_root=$([ -d /run/tally ] && echo yes || echo no)
ledger_lines=$(cat "$ledger" 2>/dev/null | wc -l)
# With cgroupfs, Podman puts conmon in libpod_parent/conmon and never removes it. Whatever of
# it is empty goes, at the end and first of all (a run killed half-way, as a session's end
# kills it, leaves them; rmdir removes only a cgroup no process is in, so another Podman's
# live ones stay). Memory is hidden by the sandbox: there they are plain tmpfs directories.
libpod_dirs() {
  find /sys/fs/cgroup -mindepth 2 -maxdepth 4 -type d -path '*/libpod_parent*' 2>/dev/null |
    while read -r d; do [ "$(stat -f -c %T "$d")" = tmpfs ] || echo "$d"; done
}
remove_libpod() {
  libpod_dirs | sort -r | while read -r d; do rmdir "$d" 2>/dev/null; done
}
remove_libpod
# shellcheck disable=SC2046  # podman_flags' words are meant to split (paths without spaces)
podman() { command podman $(podman_flags) "$@"; }
cleanup() {
  podman rm --force --all >/dev/null 2>&1
  # conmon outlives its container by a moment, and holds libpod_parent/conmon until it exits.
  i=0
  while pgrep -f "conmon.*$work" >/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
  remove_libpod
  if [ "$had_root" = no ]; then
    rm -rf /run/tally
  elif [ -f "$ledger" ]; then
    # Under the ledger's own lock, as tally takes it: an append by anyone else meanwhile waits.
    flock "$ledger" sh -c 'head -n "$1" "$2" > "$2.e2e" && mv "$2.e2e" "$2"' sh "$ledger_lines" "$ledger"
  fi
  grep " $work" /proc/self/mountinfo | awk '{print $5}' | sort -r | while read -r m; do umount "$m" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT

echo "== podman $(command podman --version | awk '{print $3}') --runtime $tally"
expect_status "podman run --rm returns the container's exit status (3)" 3 \
  podman run --rm --rootfs "$work/rootfs" sh -c 'echo hello from tally; exit 3'
expect_contains "podman run --rm prints the container's output" "hello from tally" "$out"

expect_status "podman run -d" 0 podman run -d --name e2e-c1 --rootfs "$work/rootfs" sleep 300
expect_status "podman exec" 0 podman exec e2e-c1 sh -c 'echo exec-ok; cat /proc/1/cmdline | tr "\0" " "'
expect_contains "the exec ran in the container" "exec-ok" "$out"
expect_contains "the exec shares the pid namespace (PID 1 is sleep)" "sleep 300" "$out"
expect_status "podman exec returns the process's status (4)" 4 podman exec e2e-c1 sh -c 'exit 4'
expect_status "podman exec -t (a pty through the console socket)" 0 podman exec -t e2e-c1 tty
expect_contains "the exec's stdin is a pty" "/dev/pts/" "$out"
expect_status "podman pause" 0 podman pause e2e-c1
expect_contains "podman shows it paused" "paused" "$(podman inspect --format '{{.State.Status}}' e2e-c1)"
expect_status "podman unpause" 0 podman unpause e2e-c1
expect_contains "podman shows it running" "running" "$(podman inspect --format '{{.State.Status}}' e2e-c1)"
# Podman 4.3's update has no --pids-limit; CPU limits are what it can change here (the
# sandbox has no memory controller).
expect_status "podman update --cpu-shares 512 --cpu-quota 50000" 0 podman update --cpu-shares 512 --cpu-quota 50000 e2e-c1
cid=$(podman inspect --format '{{.Id}}' e2e-c1)
cpu_dir=$(find /sys/fs/cgroup/cpu,cpuacct /sys/fs/cgroup/cpu -maxdepth 3 -type d -name "*$cid*" 2>/dev/null | head -1)
expect_eq "the container's cpu.shares is 512" "512" "$(cat "$cpu_dir/cpu.shares" 2>/dev/null)"
expect_eq "the container's cpu.cfs_quota_us is 50000" "50000" "$(cat "$cpu_dir/cpu.cfs_quota_us" 2>/dev/null)"
expect_contains "tally saved the new limits" '"shares":512' "$(cat "$(find /run "$work" -maxdepth 6 -path "*$cid*" -name state.json 2>/dev/null | head -1)" 2>/dev/null)"
expect_status "podman stop" 0 podman stop --time 2 e2e-c1
expect_status "podman rm" 0 podman rm e2e-c1

expect_status "podman run -t" 0 podman run --rm -t --rootfs "$work/rootfs" tty
expect_contains "a terminal container has a pty" "/dev/pts/" "$out"

expect_status "podman run of a missing program fails with 127" 127 \
  podman run --rm --rootfs "$work/rootfs" /no/such/program
expect_contains "podman shows tally's error" "/no/such/program: no such file or directory" "$out"
expect_eq "podman shows the error once" 1 "$(printf '%s\n' "$out" | grep -o 'tally:' | wc -l)"
expect_status "podman run of a program not in PATH fails with 127" 127 \
  podman run --rm --rootfs "$work/rootfs" no-such-program
expect_status "podman run of a program that is not executable fails with 126" 126 \
  podman run --rm --rootfs "$work/rootfs" /etc/passwd
expect_contains "podman shows the reason" "permission denied" "$out"

expect_status "podman run --read-only (its tmpfs mounts carry tmpcopyup)" 0 \
  podman run --rm --read-only --rootfs "$work/rootfs" sh -c 'touch /tmp/t && echo tmp-writable; touch /etc/t 2>&1; true'
expect_contains "/tmp is writable" "tmp-writable" "$out"
expect_contains "the rest is read-only" "Read-only file system" "$out"
expect_status "podman run --tmpfs /etc (tmpcopyup)" 0 \
  podman run --rm --tmpfs /etc --rootfs "$work/rootfs" sh -c 'head -1 /etc/passwd; echo x > /etc/new && echo etc-writable'
expect_contains "the image's /etc/passwd is in the tmpfs" "root:x:0:0" "$out"
expect_contains "the tmpfs is writable" "etc-writable" "$out"
expect_eq "the image is untouched" "no" "$([ -e "$work/rootfs/etc/new" ] && echo yes || echo no)"
expect_status "podman run --memory on a host without the memory controller (an empty memory section)" 0 \
  podman run --rm --memory 64m --rootfs "$work/rootfs" echo memory-ok
expect_contains "the container ran" "memory-ok" "$out"
if [ -c /dev/fuse ]; then
  expect_status "podman run --device /dev/fuse:/dev/fuse:r" 0 \
    podman run --rm --device /dev/fuse:/dev/fuse:r --rootfs "$work/rootfs" sh -c 'echo x > /dev/fuse; echo done'
  expect_contains "a write-open of a read-only device is refused by the device cgroup" "Operation not permitted" "$out"
else
  skip "podman run --device /dev/fuse:r" "no /dev/fuse on this host"
fi
# An rshared volume: a mount the container makes under it shows on the host (Podman sends
# rootfsPropagation shared for it).
mkdir -p "$work/shared"
mount -t tmpfs e2e-shared "$work/shared" && mount --make-shared "$work/shared"
expect_status "podman run -v SRC:/data:rshared" 0 \
  podman run --rm --cap-add SYS_ADMIN -v "$work/shared:/data:rshared" --rootfs "$work/rootfs" \
  sh -c 'mkdir -p /data/sub && mount -t tmpfs from-container /data/sub && grep " /data " /proc/self/mountinfo'
expect_contains "/data is shared inside" "shared:" "$out"
expect_eq "the container's mount under /data appears on the host" yes \
  "$(grep -q " $work/shared/sub " /proc/self/mountinfo && echo yes || echo no)"
umount "$work/shared/sub" 2>/dev/null
umount "$work/shared"
if [ -e /sys/fs/cgroup/systemd/cgroup.procs ] && [ ! -e /sys/fs/cgroup/cgroup.controllers ]; then
  expect_status "podman run on a hybrid host" 0 \
    podman run --rm --rootfs "$work/rootfs" sh -c 'grep name=systemd /proc/self/cgroup; cat /sys/fs/cgroup/systemd/cgroup.procs'
  expect_contains "the container has its own name=systemd cgroup, mounted" "libpod" "$out"
else
  skip "podman run on a hybrid host" "no name=systemd hierarchy next to v1 controllers here"
fi
start=$(date +%s)
expect_status "podman run --timeout 2 of sleep 1000 ends with 255" 255 \
  podman run --rm --timeout 2 --name e2e-timeout --rootfs "$work/rootfs" sleep 1000
took=$(($(date +%s) - start))
expect_eq "it ended within 5 s" yes "$([ "$took" -le 5 ] && echo yes || echo "no ($took s)")"
expect_eq "no container is left of it" "" "$(podman ps -aq --filter name=e2e-timeout)"

expect_eq "podman has no containers left" "" "$(podman ps -aq)"
expect_eq "no libpod cgroup of the test remains" "" "$(find /sys/fs/cgroup -maxdepth 4 -type d -name "*$cid*" 2>/dev/null)"
cleanup
trap - EXIT
expect_eq "no conmon remains" "" "$(pgrep -f "conmon.*$work" || true)"
# Any libpod_parent cgroup left now is this run's (the first remove_libpod took the old
# empty ones), unless some process is still in it.
left=$(libpod_dirs | while read -r d; do [ -n "$(cat "$d/cgroup.procs" 2>/dev/null)" ] || echo "$d"; done)
expect_eq "no empty libpod_parent cgroup remains" "" "$left"
finish podman
