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

# apparmor_parser, criu and the host's tar and ip for the guest (hack/vm/guest-tools.sh).
hack/vm/guest-tools.sh "$payload"
echo "$bins" | while read -r name path; do
  if [ -z "$only" ] || echo " $only " | grep -q " $name "; then cp "$path" "$payload/tests/$name"; fi
done

cat > "$payload/run" <<'SCRIPT'
#!/bin/sh
# In the guest: every test binary against /payload/tally; a summary; failure if any failed.
export TALLY_BIN=/payload/tally TALLY_BUSYBOX=/bin/busybox TALLY_SKIP_LOG=/tmp/skipped TALLY_IN_VM=1
export TALLY_APPARMOR_PARSER=/payload/bin/apparmor_parser TALLY_CRIU=/payload/bin/criu
export PATH=/payload/gnu:/payload/bin:$PATH
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
