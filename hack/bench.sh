#!/bin/sh
# bench.sh TALLY: tally against runc and crun, in one run, on the same busybox bundle.
#   1. `run` of /bin/true (create + start + wait + delete in one call)
#   2. the separate-call cycle callers use: create; start; wait for exit; delete
#   3. peak RSS of one `run` call (GNU time's maximum resident set size)
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
  exec "$here/cgroup-sandbox.sh" "$0" "$@"
fi
runs=${TALLY_BENCH_RUNS:-50}
work=$(mktemp -d /tmp/tally-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
"$here/make-bundle.sh" "$work/bundle" "$tally" >/dev/null
sed -i 's|"sh"$|"/bin/true"|' "$work/bundle/config.json"

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

names=""; run_cmds=""; cycle_cmds=""
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
for name in $names; do
  left=$(ls "$work/root-$name" 2>/dev/null | wc -l)
  [ "$left" -eq 0 ] || echo "warning: $name left $left containers in its state root"
done
