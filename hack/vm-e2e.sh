#!/bin/sh
# vm-e2e.sh TALLY [SKIP_LOG]: the end-to-end runs that need a kernel CRIU can dump on (the
# host's cannot: docs/compatibility.md), in the VM: Podman's and containerd's checkpoint and
# restore driving the static TALLY (hack/e2e/podman-checkpoint.sh, containerd-checkpoint.sh).
# The clients are the host's Debian packages, run natively in the guest with the host's C
# library (hack/vm/guest-tools.sh). The console log is kept in target/vm-e2e-console.log.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
tally=$(realpath "$1")
skip_log=${2:-}
cd "$here/.."
payload=$(mktemp -d /tmp/tally-vm-e2e.XXXXXX)
chmod 0755 "$payload"
trap 'rm -rf "$payload"' EXIT
cp "$tally" "$payload/tally"
hack/vm/guest-tools.sh "$payload" clients
mkdir -p "$payload/hack/e2e"
cp hack/make-rootfs.sh "$payload/hack/"
cp hack/e2e/lib.sh hack/e2e/oci-image.sh hack/e2e/podman-checkpoint.sh hack/e2e/containerd-checkpoint.sh "$payload/hack/e2e/"
cat > "$payload/run" <<'SCRIPT'
#!/bin/sh
# In the guest: Podman's and containerd's checkpoint/restore against /payload/tally.
export PATH=/payload/gnu:/payload/bin:$PATH TALLY_SKIP_LOG=/tmp/skipped
# busybox sh runs its own applets before PATH: GNU tar by path for hack/e2e/oci-image.sh.
export TAR=/payload/gnu/tar
# What Podman reads to accept an image (`podman import`): anything local.
mkdir -p /etc/containers
echo '{"default":[{"type":"insecureAcceptAnything"}]}' > /etc/containers/policy.json
status=0
/payload/hack/e2e/podman-checkpoint.sh /payload/tally || status=1
/payload/hack/e2e/containerd-checkpoint.sh /payload/tally || status=1
if [ -s /tmp/skipped ]; then sed 's/^/TALLY-VM-SKIP: /' /tmp/skipped; fi
[ $status = 0 ] && echo "== vm-e2e: all passed" || echo "== vm-e2e: FAILED"
exit $status
SCRIPT
chmod +x "$payload/run"
log=$(pwd)/target/vm-e2e-console.log
set +e
TALLY_VM_LOG=$log hack/vm/run.sh "$payload" "${TALLY_VM_LIMIT:-600}"
status=$?
set -e
if [ -n "$skip_log" ]; then
  sed -n 's/^TALLY-VM-SKIP: \(.*\)\r\{0,1\}$/vm: \1/p' "$log" >> "$skip_log"
fi
exit $status
