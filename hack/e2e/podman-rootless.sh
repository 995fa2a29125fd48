#!/bin/sh
# podman-rootless.sh TALLY: rootless Podman with tally, as the unprivileged user tally-rootless
# (hack/rootless-user.sh: its subordinate ids in /etc/subuid and /etc/subgid, which Podman maps
# through newuidmap). Podman runs the runtime as root of a user namespace of its own, with the
# user's whole range mapped; tally detects it (--rootless auto) and goes without a cgroup on this
# cgroup v1 host. run --rm with output and exit code, run -d + exec + exec's status + top +
# stop + rm, the error of a missing program, and nothing left: no process, no
# mount, no state in Podman's runtime root for tally.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
tally=$(realpath "$1")
user=tally-rootless
echo "== rootless podman $(command podman --version | awk '{print $3}') --runtime $tally, as $user"
if ! id -u "$user" >/dev/null 2>&1 || ! command -v newuidmap >/dev/null; then
  skip "rootless podman" "no $user user or no newuidmap (hack/rootless-user.sh, package uidmap)"
  finish "rootless podman"
  exit $?
fi
work=$(mktemp -d /tmp/tally-e2e-rootless.XXXXXX)
chmod 0755 "$work"
make_rootfs "$work/rootfs"
mkdir -p "$work/home" "$work/xdg"
containers_conf "$work/containers.conf"
chown -R "$user:" "$work"
chmod 0700 "$work/xdg"
# The user's session as a login would give it: its own HOME and XDG_RUNTIME_DIR.
as_user() {
  setpriv --reuid "$user" --regid "$user" --clear-groups \
    env HOME="$work/home" XDG_RUNTIME_DIR="$work/xdg" CONTAINERS_CONF="$work/containers.conf" \
    PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"
}
# shellcheck disable=SC2046  # podman_flags' words are meant to split (paths without spaces)
podman() { as_user podman $(podman_flags) "$@"; }
cleanup() {
  podman rm --force --all >/dev/null 2>&1
  i=0
  while pgrep -u "$user" -f "conmon.*$work" >/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
  # Podman's pause process keeps its user namespace alive between commands.
  pkill -u "$user" -f "catatonit|podman pause" 2>/dev/null
  grep " $work" /proc/self/mountinfo | awk '{print $5}' | sort -r | while read -r m; do umount "$m" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT

expect_status "podman run --rm returns the container's exit status (3)" 3 \
  podman run --rm --rootfs "$work/rootfs" sh -c 'id -u; cat /proc/self/uid_map; exit 3'
# (Podman's own warnings, time="..." lines, come first on stderr.)
expect_eq "the container's root is root of a user namespace" "0" "$(printf '%s\n' "$out" | grep -v '^time=' | head -1)"
expect_contains "Podman's subordinate range is mapped" "200000" "$out"
expect_status "podman run -d" 0 podman run -d --name rl-c1 --rootfs "$work/rootfs" sleep 300
expect_status "podman exec" 0 podman exec rl-c1 sh -c 'echo exec-ok; cat /proc/1/cmdline | tr "\0" " "'
expect_contains "the exec ran in the container" "exec-ok" "$out"
expect_contains "the exec shares the pid namespace (PID 1 is sleep)" "sleep 300" "$out"
expect_status "podman exec returns the process's status (4)" 4 podman exec rl-c1 sh -c 'exit 4'
expect_status "podman top" 0 podman top rl-c1 pid args
expect_contains "podman top lists the init" "sleep 300" "$out"
state_dir=$(find "$work" -name state.json -path '*tally*' 2>/dev/null | head -1)
expect_contains "tally keeps its state in Podman's runtime root" "$work" "$state_dir"
expect_contains "tally's state says rootless, no cgroup" '"no_cgroup"' "$(cat "$state_dir" 2>/dev/null)"
expect_status "podman stop" 0 podman stop --time 1 rl-c1
expect_status "podman rm" 0 podman rm rl-c1
expect_status "podman run of a missing program fails with 127" 127 \
  podman run --rm --rootfs "$work/rootfs" /no/such/program
expect_contains "podman shows tally's error" "/no/such/program: no such file or directory" "$out"

expect_eq "no container process is left" "" "$(pgrep -u "$user" -f 'sleep 300')"
expect_eq "no tally state is left" "" "$(find "$work" -name state.json -path '*tally*' 2>/dev/null)"
expect_eq "no mount under the rootfs is left" "" "$(grep " $work/rootfs" /proc/self/mountinfo)"
finish "rootless podman"
