#!/bin/sh
# bench.sh TALLY: tally against runc and crun, in one run, on the same busybox bundle.
#   1. `run` of /bin/true (create + start + wait + delete in one call)
#   2. the separate-call cycle callers use: create; start; wait for exit; delete
#   3. peak RSS of one `run` call (GNU time's maximum resident set size)
#   4. `run` with a realistic seccomp profile (containers/common's default, Docker's format,
#      from the Debian package golang-github-containers-common-dev), and tally with its
#      compiled-filter cache cold (emptied before each run) against warm
# Runs inside the cgroup sandbox without the v2 "unified" mount, because crun 1.8 refuses
# hybrid hosts; all three runtimes see the same cgroups. Results: hyperfine's tables on stdout
# and markdown in target/bench/.
set -eu
tally=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
out=$(realpath -m "$here/../target/bench")
mkdir -p "$out"
if [ -z "${TALLY_BENCH_IN_SANDBOX:-}" ]; then
  export TALLY_BENCH_IN_SANDBOX=1 SANDBOX_NO_UNIFIED=1
  # A mount namespace of its own even where the sandbox needs none (pure v2): the scratch
  # tmpfs (bench_scratch) goes with the run, however it ends.
  exec unshare --mount --propagation private "$here/cgroup-sandbox.sh" "$0" "$@"
fi
runs=${TALLY_BENCH_RUNS:-50}
names=""
# shellcheck source=bench-common.sh
. "$here/bench-common.sh"
work=$(bench_scratch tally-bench)
trap bench_cleanup EXIT
"$here/make-bundle.sh" "$work/bundle" "$tally" >/dev/null
# crun 1.8 refuses configs newer than the spec versions it knows ("unknown version
# specified"); every runtime here reads a 1.0.2 config the same way.
sed -i -e 's|"sh"$|"/bin/true"|' -e 's|"ociVersion": "[^"]*"|"ociVersion": "1.0.2"|' "$work/bundle/config.json"

# The cycle, for one runtime: the init's PID comes from --pid-file; "wait" polls its
# /proc/PID/stat until it is a zombie or gone (the same cost for every runtime).
cat > "$work/cycle.sh" <<'SCRIPT'
#!/bin/sh
set -e
rt=$1; root=$2; bundle=$3; id=c$$
"$rt" --root "$root" create --bundle "$bundle" --pid-file "$root.$id.pid" "$id"
pid=$(cat "$root.$id.pid")
"$rt" --root "$root" start "$id"
while read -r _ _ s _ < "/proc/$pid/stat" 2>/dev/null && [ "$s" != Z ]; do :; done
"$rt" --root "$root" delete "$id"
rm -f "$root.$id.pid"
SCRIPT
chmod +x "$work/cycle.sh"

set -- tally "$tally"
for rt in runc crun; do
  if command -v "$rt" >/dev/null; then set -- "$@" "$rt" "$(command -v "$rt")"; fi
done

run_cmds=""; cycle_cmds=""
while [ $# -gt 0 ]; do
  name=$1; bin=$2; shift 2
  mkdir -p "$work/root-$name"
  set -- "$@"
  names="$names $name"
  eval "bin_$name=\$bin"
done
args_run=""; args_cycle=""
for name in $names; do
  eval "bin=\$bin_$name"
  args_run="$args_run -n $name '$bin --root $work/root-$name run --bundle $work/bundle bench'"
  args_cycle="$args_cycle -n $name '$work/cycle.sh $bin $work/root-$name $work/bundle'"
done
echo "== run /bin/true ($runs runs each)"
eval hyperfine -N --warmup 5 --runs "$runs" --export-markdown "$out/run.md" $args_run
echo "== create + start + wait + delete ($runs runs each)"
eval hyperfine --warmup 5 --runs "$runs" --export-markdown "$out/cycle.md" $args_cycle

echo "== peak RSS of one run call (KiB, max of 10)"
: > "$out/rss.md"
echo "| runtime | peak RSS (KiB) |" >> "$out/rss.md"
echo "|---|---|" >> "$out/rss.md"
for name in $names; do
  eval "bin=\$bin_$name"
  max=0
  for i in 1 2 3 4 5 6 7 8 9 10; do
    kb=$(/usr/bin/time -f %M "$bin" --root "$work/root-$name" run --bundle "$work/bundle" "m$i" 2>&1 >/dev/null | tail -n 1)
    [ "$kb" -gt "$max" ] && max=$kb
  done
  echo "$name: $max"
  echo "| $name | $max |" >> "$out/rss.md"
done
# RSS counts every page of the binary the process has mapped, and the kernel maps file pages
# around each code fault: shared page-cache pages, not memory the process costs. So the memory a
# create costs is also read from /proc/PID/smaps_rollup while a createRuntime hook (`sleep 1`,
# run by the create process of all three runtimes) holds it: its private dirty pages (heap,
# stack, written data: what no other process shares), of the process the command started (not
# the container process it cloned). PSS is left out: it depends on how many other processes
# happen to map the same binary. `sync` first: a freshly linked binary's pages are still dirty
# in the page cache and would count as dirty.
sync
echo "== memory of one create, held by a createRuntime hook (KiB: Rss, Private_Dirty)"
cp -a "$work/bundle" "$work/bundle-hook"
sed -i 's|"ociVersion"|"hooks": {"createRuntime": [{"path": "/bin/sleep", "args": ["sleep", "1"]}]},\n\t"ociVersion"|' "$work/bundle-hook/config.json"
{ echo "| runtime | Rss | Private_Dirty |"; echo "|---|---|---|"; } > "$out/memory.md"
for name in $names; do
  eval "bin=\$bin_$name"
  "$bin" --root "$work/root-$name" create --bundle "$work/bundle-hook" pss >/dev/null 2>&1 &
  sleep 0.5
  best=$(awk '/^Rss:/ {r=$2} /^Private_Dirty:/ {d=$2} END {print r, d}' "/proc/$!/smaps_rollup" 2>/dev/null)
  wait
  "$bin" --root "$work/root-$name" delete --force pss >/dev/null 2>&1 || true
  echo "$name: $best"
  echo "| $name | $(echo "$best" | sed 's/ / | /g') |" >> "$out/memory.md"
done
echo "== run /bin/true with the default seccomp profile ($runs runs each)"
profile="$out/containers-common-seccomp.json"
if [ ! -s "$profile" ]; then
  dl=$(mktemp -d /tmp/tally-bench-deb.XXXXXX)
  (cd "$dl" && apt-get download -qq golang-github-containers-common-dev >/dev/null 2>&1 && dpkg-deb -x ./*.deb x) || true
  cp "$dl/x/usr/share/gocode/src/github.com/containers/common/pkg/seccomp/seccomp.json" "$profile" 2>/dev/null || true
  rm -rf "$dl"
fi
if [ -s "$profile" ] && command -v python3 >/dev/null; then
  cp -a "$work/bundle" "$work/bundle-seccomp"
  python3 "$here/seccomp-profile.py" "$profile" "$work/bundle-seccomp/config.json"
  args_sc=""
  for name in $names; do
    eval "bin=\$bin_$name"
    args_sc="$args_sc -n $name '$bin --root $work/root-$name run --bundle $work/bundle-seccomp bench'"
  done
  eval hyperfine -N --warmup 5 --runs "$runs" --export-markdown "$out/seccomp.md" $args_sc
  # --prepare applies to every command of a hyperfine call: the cold cache gets its own.
  echo "== tally with its seccomp cache emptied before every run"
  hyperfine -N --warmup 2 --runs "$runs" --export-markdown "$out/seccomp-cold.md" -n tally-cold-cache \
    --prepare "rm -rf $work/root-tally/.seccomp-cache" "$bin_tally --root $work/root-tally run --bundle $work/bundle-seccomp bench"
else
  echo "skipped: could not fetch the profile (golang-github-containers-common-dev) or no python3"
fi

# exec into a running container: back to back, and 50 ms apart as probes and health checks
# come. Spaced out is what a move into the cgroup by PID costs most (each one waits for an RCU
# grace period; back to back, the kernel reuses the last one's).
cp -a "$work/bundle" "$work/bundle-sleep"
sed -i 's|"/bin/true"$|"sleep", "1000000"|' "$work/bundle-sleep/config.json"
args_exec=""
for name in $names; do
  eval "bin=\$bin_$name"
  "$bin" --root "$work/root-$name" run -d --bundle "$work/bundle-sleep" ex </dev/null >/dev/null 2>&1
  args_exec="$args_exec -n $name '$bin --root $work/root-$name exec ex /bin/true'"
done
echo "== exec /bin/true into a running container ($runs runs each, back to back)"
eval hyperfine -N --warmup 5 --runs "$runs" --export-markdown "$out/exec.md" $args_exec
echo "== the same, 50 ms apart"
eval hyperfine -N --warmup 5 --runs "$runs" --prepare "'sleep 0.05'" --export-markdown "$out/exec-spaced.md" $args_exec
for name in $names; do
  eval "bin=\$bin_$name"
  "$bin" --root "$work/root-$name" delete --force ex >/dev/null 2>&1
done

for name in $names; do
  left=$(ls "$work/root-$name" 2>/dev/null | wc -l)
  [ "$left" -eq 0 ] || echo "warning: $name left $left containers in its state root"
done
