#!/bin/sh
# guest-tools.sh PAYLOAD_DIR: the programs from Debian packages that tests and benchmarks run in
# the guest, put into PAYLOAD_DIR (which becomes /payload). Each is dynamically linked and the
# guest has no C library: PAYLOAD_DIR/NAME/ gets it with the libraries ldd finds (the host's C
# library, the unpacked packages' own) and a wrapper NAME that runs it through that loader.
#   apparmor_parser  the AppArmor tests
#   criu             checkpoint/restore (TALLY_CRIU=/payload/criu/criu)
#   tar, ip          the host's GNU tar and iproute2 ip, which CRIU runs (busybox's lack its
#                    options); put /payload/tar:/payload/ip first on PATH
set -eu
payload=$1
here=$(cd "$(dirname "$0")" && pwd)
"$here/fetch.sh"
# shellcheck source=common.sh
. "$here/common.sh"
guest_libs=$VM_GUEST_ROOT/usr/lib/x86_64-linux-gnu:$VM_GUEST_ROOT/lib/x86_64-linux-gnu
guest_tool() {
  name=$1
  case $2 in /*) bin=$2 ;; *) bin=$VM_GUEST_ROOT/$2 ;; esac
  [ -x "$bin" ] || { echo "guest-tools: no $bin (hack/vm/fetch.sh unpacks it)" >&2; exit 1; }
  mkdir -p "$payload/$name"
  cp "$bin" "$payload/$name/$name.bin"
  loader=""
  for lib in $(LD_LIBRARY_PATH=$guest_libs ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
    cp -L "$lib" "$payload/$name/"
    case $lib in */ld-linux*) loader=${lib##*/} ;; esac
  done
  if LD_LIBRARY_PATH=$guest_libs ldd "$bin" | grep -q 'not found'; then
    echo "guest-tools: $bin needs libraries no package in VM_GUEST_PKGS has:" >&2
    LD_LIBRARY_PATH=$guest_libs ldd "$bin" | grep 'not found' >&2
    exit 1
  fi
  [ -n "$loader" ] || { echo "guest-tools: ldd names no loader for $bin" >&2; exit 1; }
  printf '#!/bin/sh\nexec /payload/%s/%s --library-path /payload/%s /payload/%s/%s.bin "$@"\n' \
    "$name" "$loader" "$name" "$name" "$name" > "$payload/$name/$name"
  chmod +x "$payload/$name/$name"
}
guest_tool apparmor_parser sbin/apparmor_parser
guest_tool criu usr/sbin/criu
# CRIU archives tmpfs contents with GNU tar's options and saves a network namespace's addresses
# and routes with iproute2's `ip addr save`, which busybox's tar and ip lack: the host's.
guest_tool tar "$(command -v tar)"
guest_tool ip "$(command -v ip)"
