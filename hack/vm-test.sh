#!/bin/sh
# vm-test.sh TALLY [SKIP_LOG [TEST_FILE...]]: runs the integration test binaries (all, or the
# named ones, e.g. cgroup_v2) inside the cgroup v2 VM (hack/vm/run.sh) against the static
# TALLY. The test binaries are built static here; the guest has no C library. The console log
# is kept in target/vm-console.log.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
tally=$(realpath "$1")
skip_log=${2:-}
shift $(( $# >= 2 ? 2 : 1 ))
only="$*"
target=x86_64-unknown-linux-gnu
cd "$here/.."
payload=$(mktemp -d /tmp/tally-vm-payload.XXXXXX)
# mktemp's 0700 would become /payload's mode: the rootless tests run tally as another user.
chmod 0755 "$payload"
trap 'rm -rf "$payload"' EXIT

# cargo prints "Executable tests/x.rs (target/.../deps/x-hash)" for each test binary.
# (Through a file, not `tee /dev/stderr`: reopening stderr truncates it when it is a log file.)
RUSTFLAGS='-C target-feature=+crt-static' cargo test --locked --no-run --target "$target" -p integration_tests \
  > "$payload/build.log" 2>&1 || { cat "$payload/build.log" >&2; exit 1; }
cat "$payload/build.log" >&2
bins=$(sed -n 's/.*Executable tests\/\([a-z_0-9]*\)\.rs (\(.*\))$/\1 \2/p' "$payload/build.log")
rm -f "$payload/build.log"
[ -n "$bins" ] || { echo "vm-test: no integration test binaries were built" >&2; exit 1; }
mkdir -p "$payload/tests"
cp "$tally" "$payload/tally"

# Programs from Debian packages the tests run in the guest (hack/vm/fetch.sh unpacks them into
# $VM_GUEST_ROOT): apparmor_parser for the AppArmor tests, criu for checkpoint/restore. They are
# dynamically linked and the guest has no C library: each goes into payload/NAME/ with the
# libraries ldd finds (the host's C library, the unpacked packages' own), and a wrapper that
# runs it through that loader.
hack/vm/fetch.sh
# shellcheck source=vm/common.sh
. hack/vm/common.sh
guest_libs=$VM_GUEST_ROOT/usr/lib/x86_64-linux-gnu:$VM_GUEST_ROOT/lib/x86_64-linux-gnu
guest_tool() {
  name=$1
  case $2 in /*) bin=$2 ;; *) bin=$VM_GUEST_ROOT/$2 ;; esac
  [ -x "$bin" ] || { echo "vm-test: no $bin (hack/vm/fetch.sh unpacks it)" >&2; exit 1; }
  mkdir -p "$payload/$name"
  cp "$bin" "$payload/$name/$name.bin"
  loader=""
  for lib in $(LD_LIBRARY_PATH=$guest_libs ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
    cp -L "$lib" "$payload/$name/"
    case $lib in */ld-linux*) loader=${lib##*/} ;; esac
  done
  if LD_LIBRARY_PATH=$guest_libs ldd "$bin" | grep -q 'not found'; then
    echo "vm-test: $bin needs libraries no package in VM_GUEST_PKGS has:" >&2
    LD_LIBRARY_PATH=$guest_libs ldd "$bin" | grep 'not found' >&2
    exit 1
  fi
  [ -n "$loader" ] || { echo "vm-test: ldd names no loader for $bin" >&2; exit 1; }
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
echo "$bins" | while read -r name path; do
  if [ -z "$only" ] || echo " $only " | grep -q " $name "; then cp "$path" "$payload/tests/$name"; fi
done

cat > "$payload/run" <<'SCRIPT'
#!/bin/sh
# In the guest: every test binary against /payload/tally; a summary; failure if any failed.
export TALLY_BIN=/payload/tally TALLY_BUSYBOX=/bin/busybox TALLY_SKIP_LOG=/tmp/skipped TALLY_IN_VM=1
export TALLY_APPARMOR_PARSER=/payload/apparmor_parser/apparmor_parser TALLY_CRIU=/payload/criu/criu
export PATH=/payload/tar:/payload/ip:$PATH
failed=""
for t in /payload/tests/*; do
  name=$(basename "$t")
  echo "== vm: $name"
  # One hung test must not eat the whole VM's time: each binary gets at most 300 s.
  timeout 300 "$t" --test-threads=2
  case $? in
    0) ;;
    124|143) echo "== vm: $name did not finish within 300s"; failed="$failed $name(timeout)" ;;
    *) failed="$failed $name" ;;
  esac
done
if [ -s /tmp/skipped ]; then
  echo "== vm: skipped tests (reason):"
  sed 's/^/TALLY-VM-SKIP: /' /tmp/skipped
fi
if [ -n "$failed" ]; then echo "== vm: FAILED:$failed"; exit 1; fi
echo "== vm: all test binaries passed"
SCRIPT
chmod +x "$payload/run"
log=$(pwd)/target/vm-console.log
set +e
TALLY_VM_LOG=$log hack/vm/run.sh "$payload" "${TALLY_VM_LIMIT:-900}"
status=$?
set -e
if [ -n "$skip_log" ]; then
  sed -n 's/^TALLY-VM-SKIP: \(.*\)\r\{0,1\}$/vm: \1/p' "$log" >> "$skip_log"
fi
exit $status
