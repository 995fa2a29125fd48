#!/bin/sh
# guest-tools.sh PAYLOAD_DIR [clients]: the programs from Debian packages that tests and
# benchmarks run in the guest, put into PAYLOAD_DIR (which becomes /payload). They are
# dynamically linked; the guest's own userland is static busybox. So the libraries ldd finds for
# them (the host's C library, the unpacked packages' own) go into PAYLOAD_DIR/lib, which /init
# links at the standard places (/lib/x86_64-linux-gnu, /lib64/ld-linux-x86-64.so.2): the
# programs then run natively, and those that re-execute themselves through /proc/self/exe
# (Podman, the containerd shim, CRIU) work as on any host.
#   bin/apparmor_parser  the AppArmor tests
#   bin/criu             checkpoint/restore (TALLY_CRIU=/payload/bin/criu)
#   gnu/tar, gnu/ip      the host's GNU tar and iproute2 ip, which CRIU runs (busybox's lack
#                        their options); put /payload/gnu first on PATH
# With `clients`, also the clients that drive tally in production, for hack/vm-e2e.sh:
#   bin/podman, bin/conmon, bin/containerd, bin/ctr, bin/containerd-shim-runc-v2
set -eu
payload=$1
clients=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
"$here/fetch.sh"
# shellcheck source=common.sh
. "$here/common.sh"
guest_libs=$VM_GUEST_ROOT/usr/lib/x86_64-linux-gnu:$VM_GUEST_ROOT/lib/x86_64-linux-gnu
mkdir -p "$payload/bin" "$payload/gnu" "$payload/lib"
# guest_tool DIR PROGRAM: PROGRAM (a path under VM_GUEST_ROOT, or absolute for the host's own)
# into PAYLOAD_DIR/DIR, its libraries into PAYLOAD_DIR/lib.
guest_tool() {
  dir=$1
  case $2 in /*) bin=$2 ;; *) bin=$VM_GUEST_ROOT/$2 ;; esac
  [ -x "$bin" ] || { echo "guest-tools: no $bin (hack/vm/fetch.sh unpacks it; make deps installs the host's)" >&2; exit 1; }
  if LD_LIBRARY_PATH=$guest_libs ldd "$bin" | grep -q 'not found'; then
    echo "guest-tools: $bin needs libraries that neither the host nor VM_GUEST_PKGS has:" >&2
    LD_LIBRARY_PATH=$guest_libs ldd "$bin" | grep 'not found' >&2
    exit 1
  fi
  cp "$bin" "$payload/$dir/"
  for lib in $(LD_LIBRARY_PATH=$guest_libs ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
    [ -e "$payload/lib/${lib##*/}" ] || cp -L "$lib" "$payload/lib/"
  done
}
guest_tool bin sbin/apparmor_parser
guest_tool bin usr/sbin/criu
# CRIU archives tmpfs contents with GNU tar's options and saves a network namespace's addresses
# and routes with iproute2's `ip addr save`, which busybox's tar and ip lack: the host's.
guest_tool gnu "$(command -v tar)"
guest_tool gnu "$(command -v ip)"
if [ "$clients" = clients ]; then
  for c in podman conmon containerd ctr containerd-shim-runc-v2; do
    p=$(command -v "$c") || { echo "guest-tools: no $c on this host (make deps installs it)" >&2; exit 1; }
    guest_tool bin "$p"
  done
fi
[ -e "$payload/lib/ld-linux-x86-64.so.2" ] || { echo "guest-tools: ldd named no ld-linux-x86-64.so.2" >&2; exit 1; }
