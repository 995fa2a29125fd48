#!/bin/sh
# demo.sh TALLY: runs one busybox container with tally and shows what it sees (its hostname,
# its PID 1, its identity), then its beancounters (OpenVZ's per-container resource accounting)
# while it runs. Everything it makes is removed at the end.
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
for i in 1 2 3 4; do sleep 30 & done
touch /tmp/demo-ready
wait
SCRIPT
sed -i 's|"sh"$|"sh", "/demo.sh"|' "$work/bundle/config.json"
# A beancounter limit, set the OpenVZ way: at most 64 processes (numproc barrier:limit).
sed -i 's|"annotations": {}|"annotations": {"org.tally.beancounter.numproc": "64:64"}|' "$work/bundle/config.json"
sandbox() { "$here/cgroup-sandbox.sh" "$tally" --root "$root" "$@"; }
trap 'sandbox delete --force tally-demo 2>/dev/null; rm -rf "$work"' EXIT
echo "== tally run -d tally-demo (busybox in its own pid, mount, uts, ipc, net and cgroup namespaces)"
sandbox run -d --bundle "$work/bundle" tally-demo
i=0
while [ ! -e "$work/bundle/rootfs/tmp/demo-ready" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
echo "== tally beancounters tally-demo (held, maxheld, barrier, limit, failcnt per resource)"
sandbox beancounters tally-demo
echo "== tally delete --force tally-demo"
sandbox delete --force tally-demo
echo "== after delete: containers left in the state root: $(ls "$root" | grep -cv '^\.' || true)"
