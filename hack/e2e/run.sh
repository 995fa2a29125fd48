#!/bin/sh
# run.sh TALLY: the end-to-end runs with real clients (Podman, containerd), inside the
# project's cgroup sandbox (the host's memory cgroup hierarchy stays hidden).
set -u
here=$(cd "$(dirname "$0")" && pwd)
tally=$(realpath "$1")
if [ -z "${TALLY_IN_SANDBOX:-}" ]; then
  TALLY_IN_SANDBOX=1 exec "$here/../cgroup-sandbox.sh" "$0" "$@"
fi
status=0
"$here/podman.sh" "$tally" || status=1
"$here/podman-rootless.sh" "$tally" || status=1
"$here/containerd.sh" "$tally" || status=1
[ $status = 0 ] && echo "== e2e: all passed" || echo "== e2e: FAILED"
exit $status
