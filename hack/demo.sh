#!/bin/sh
# demo.sh TALLY: runs one busybox container with tally and shows what it sees: its hostname,
# its PID 1, its identity. Everything it makes is removed at the end.
set -eu
tally=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/tally-demo.XXXXXX)
root="$work/state"
trap 'rm -rf "$work"' EXIT
"$here/make-bundle.sh" "$work/bundle" "$tally"
cat > "$work/bundle/rootfs/demo.sh" <<'SCRIPT'
echo "hostname: $(hostname)"
echo "PID 1:    $(tr '\0' ' ' < /proc/1/cmdline)"
echo "id:       $(id)"
echo "mounts:   $(wc -l < /proc/self/mounts) (/ is $(awk '$2 == "/" {print $3}' /proc/self/mounts))"
SCRIPT
sed -i 's|"sh"$|"sh", "/demo.sh"|' "$work/bundle/config.json"
echo "== tally run tally-demo (busybox in its own pid, mount, uts, ipc, net and cgroup namespaces)"
"$here/cgroup-sandbox.sh" "$tally" --root "$root" run --bundle "$work/bundle" tally-demo
echo "== after the run: containers left in the state root: $(ls "$root" 2>/dev/null | wc -l)"
