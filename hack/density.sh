#!/bin/sh
# density.sh TALLY [N]: N (default 1000, TALLY_DENSITY_N) `sleep` containers started one after
# another with tally and then with crun, in one run, on the same busybox bundle:
#   - the time of each block of 100 create+start calls (is the 1,000th as cheap as the 1st?),
#     as measured and against a machine reference timed among the block's own containers;
#     and, without the drift of the machine over the run, the time of one more create + start
#     + delete (hyperfine) with none, with all N, and (after the deletes) with none running again
#   - with all N running: `list`, `state` of one, and for tally `beancounters` of all and of one
#     (hyperfine, 10 runs each)
#   - the host memory per container: the kernel's (Slab + PageTables + KernelStack + Percpu
#     from /proc/meminfo, before the first create and after the last start, divided by N) plus
#     the container's own (Private of its init, /proc/PID/smaps_rollup); and, for reference,
#     MemTotal-MemAvailable the same way, which also moves with the page cache and is noisier
#   - the time to delete all N
# Runs inside the cgroup sandbox without the v2 "unified" mount (crun 1.8 refuses hybrid hosts).
# Results: text on stdout and markdown in target/bench/density.md.
set -eu
tally=$(realpath "$1")
n=${2:-${TALLY_DENSITY_N:-1000}}
here=$(cd "$(dirname "$0")" && pwd)
out=$(realpath -m "$here/../target/bench")
mkdir -p "$out"
if [ -z "${TALLY_BENCH_IN_SANDBOX:-}" ]; then
  export TALLY_BENCH_IN_SANDBOX=1 SANDBOX_NO_UNIFIED=1
  # A mount namespace of its own even where the sandbox needs none (pure v2): the scratch
  # tmpfs (bench_scratch) goes with the run, however it ends.
  exec unshare --mount --propagation private "$here/cgroup-sandbox.sh" "$0" "$@"
fi
case $n in ''|*[!0-9]*|0) echo "density: N must be a positive number, not '$n'" >&2; exit 2 ;; esac
names=""
# shellcheck source=bench-common.sh
. "$here/bench-common.sh"
work=$(bench_scratch tally-density)
trap bench_cleanup EXIT
"$here/make-bundle.sh" "$work/bundle" "$tally" >/dev/null
sed -i -e 's|"sh"$|"sleep", "1000000"|' -e 's|"ociVersion": "[^"]*"|"ociVersion": "1.0.2"|' "$work/bundle/config.json"

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
# The machine reference: 10 runs of `tally --version` (a static binary's exec, page faults
# and exit, none of which depends on how many containers run), after every 10th container of
# a block, for tally's and for crun's blocks alike. Its time is left out of the block's.
calibrate() { for _ in 1 2 3 4 5 6 7 8 9 10; do "$tally" --version >/dev/null; done; }
# kB of one /proc/meminfo field.
meminfo() { awk -v k="$1:" '$1 == k { print $2 }' /proc/meminfo; }
used_kb() { echo $(( $(meminfo MemTotal) - $(meminfo MemAvailable) )); }

names=tally; bin_tally=$tally
if command -v crun >/dev/null; then names="$names crun"; bin_crun=$(command -v crun); fi

{
  echo "N = $n sleep containers per runtime, started one after another (create + start)."
  echo
  echo "| runtime | first 100 (ms) | last 100 (ms) | last/first | last/first against the reference | one more with 0 / $n / 0 again running (ms) | all $n (s) | list (ms) | state (ms) | beancounters all (ms) | beancounters one (ms) | delete all (s) | memory / container (KiB) | of it slab | page tables | kernel stack | percpu | init private | MemAvailable drop / container (KiB) |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
} > "$out/density.md"
blocks_md="$out/density-blocks.md"
: > "$blocks_md"

hf() { hyperfine -N --warmup 1 --runs "${runs:-10}" --export-json "$work/hf.json" "$@" >/dev/null 2>&1 &&
       python3 -c 'import json,sys; print("%.1f" % (json.load(open(sys.argv[1]))["results"][0]["mean"] * 1000))' "$work/hf.json"; }
# One more container: create + start + delete, as a block's calls plus the delete (30 runs:
# one run's spread is 5-8 ms).
one_more() {
  runs=30 hf "sh -c '$bin --root $root create --bundle $work/bundle extra </dev/null >/dev/null 2>&1 && $bin --root $root start extra && $bin --root $root delete --force extra'"
}
for name in $names; do
  eval "bin=\$bin_$name"
  root=$work/root-$name
  mkdir -p "$root" "$work/pids-$name"
  one0=$(one_more)
  sync
  echo 3 > /proc/sys/vm/drop_caches
  used0=$(used_kb); slab0=$(meminfo Slab); pt0=$(meminfo PageTables); ks0=$(meminfo KernelStack); pc0=$(meminfo Percpu)
  echo "== $name: starting $n containers"
  blocks=""; cals=""; first=""; last=""; cal=0; cal_first=""; cal_last=""
  start_all=$(now_ms); t0=$start_all
  i=1
  while [ "$i" -le "$n" ]; do
    "$bin" --root "$root" create --bundle "$work/bundle" --pid-file "$work/pids-$name/c$i" "c$i" </dev/null >/dev/null 2>"$work/err" ||
      { echo "density: $name create c$i failed: $(cat "$work/err")" >&2; exit 1; }
    "$bin" --root "$root" start "c$i" </dev/null >/dev/null 2>"$work/err" ||
      { echo "density: $name start c$i failed: $(cat "$work/err")" >&2; exit 1; }
    # The machine's own speed, measured where the block is: this VM's vCPUs run the same
    # work up to 1.9x slower for seconds at a time (a shared host), which moves whole blocks.
    if [ $(( i % 10 )) -eq 0 ]; then
      c0=$(now_ms); calibrate; cal=$(( cal + $(now_ms) - c0 ))
    fi
    if [ $(( i % 100 )) -eq 0 ] || [ "$i" -eq "$n" ]; then
      t1=$(now_ms); ms=$(( t1 - t0 - cal )); t0=$t1
      blocks="$blocks $ms"; cals="$cals $cal"
      [ -n "$first" ] || { first=$ms; cal_first=$cal; }
      last=$ms; cal_last=$cal
      echo "  containers $(( (i - 1) / 100 * 100 + 1 ))-$i: $ms ms (machine reference $cal ms)"
      cal=0
    fi
    i=$(( i + 1 ))
  done
  all_s=$(echo "$start_all $(now_ms)" | awk '{ printf "%.1f", ($2 - $1) / 1000 }')
  echo "| $name |$blocks |" | sed 's/ \([0-9]\)/ | \1/g; s/| | /| /' >> "$blocks_md"
  echo "| (reference) |$cals |" | sed 's/ \([0-9]\)/ | \1/g; s/| | /| /' >> "$blocks_md"
  sleep 2
  used1=$(used_kb); slab1=$(meminfo Slab); pt1=$(meminfo PageTables); ks1=$(meminfo KernelStack); pc1=$(meminfo Percpu)
  rss=0; priv=0
  for f in "$work/pids-$name"/*; do
    set -- $(awk '/^Rss:/ { r = $2 } /^Private_(Clean|Dirty):/ { p += $2 } END { print r + 0, p + 0 }' "/proc/$(cat "$f")/smaps_rollup" 2>/dev/null || echo 0 0)
    rss=$(( rss + $1 )); priv=$(( priv + $2 ))
  done
  per() { echo "$1 $n" | awk '{ printf "%.1f", $1 / $2 }'; }
  running=$("$bin" --root "$root" list -q | wc -l)
  [ "$running" -eq "$n" ] || { echo "density: $name lists $running containers, not $n" >&2; exit 1; }
  mid=c$(( (n + 1) / 2 ))
  oneN=$(one_more)
  echo "  one more container: $one0 ms with none running, $oneN ms with $n"
  list_ms=$(hf "$bin --root $root list")
  state_ms=$(hf "$bin --root $root state $mid")
  bc_all=-; bc_one=-
  if [ "$name" = tally ]; then
    bc_all=$(hf "$bin --root $root beancounters")
    bc_one=$(hf "$bin --root $root beancounters $mid")
  fi
  echo "  list $list_ms ms, state $state_ms ms, beancounters all $bc_all ms, one $bc_one ms"
  kernel=$(( slab1 - slab0 + pt1 - pt0 + ks1 - ks0 + pc1 - pc0 ))
  echo "  memory per container $(per $(( kernel + priv ))) KiB: slab $(per $(( slab1 - slab0 ))), page tables $(per $(( pt1 - pt0 ))), kernel stack $(per $(( ks1 - ks0 ))), percpu $(per $(( pc1 - pc0 ))), init private $(per $priv) (Rss $(per $rss)); MemAvailable drop $(per $(( used1 - used0 )))"
  t0=$(now_ms)
  i=1
  while [ "$i" -le "$n" ]; do
    "$bin" --root "$root" delete --force "c$i" </dev/null >/dev/null 2>"$work/err" ||
      { echo "density: $name delete c$i failed: $(cat "$work/err")" >&2; exit 1; }
    i=$(( i + 1 ))
  done
  del_s=$(echo "$t0 $(now_ms)" | awk '{ printf "%.1f", ($2 - $1) / 1000 }')
  echo "  delete all: $del_s s"
  # The machine's own drift over the run: the same with none running, once more.
  one0b=$(one_more)
  echo "  one more container with none running again: $one0b ms"
  left=$(ls "$root" | wc -l)
  [ "$left" -eq 0 ] || { echo "density: $name left $left containers in its state root" >&2; exit 1; }
  ratio=$(echo "$last $first" | awk '{ printf "%.2f", $1 / $2 }')
  # Each block over the machine reference timed among its own containers: the ratio without
  # the machine's changes of speed (a reference of 0 ms, N < 10, leaves it as measured).
  ratio_ref=$(echo "$last $cal_last $first $cal_first" |
    awk '{ if ($2 > 0 && $4 > 0) printf "%.2f", ($1 / $2) / ($3 / $4); else printf "%.2f", $1 / $3 }')
  echo "  last/first: $ratio as measured, $ratio_ref against the machine reference"
  echo "| $name | $first | $last | $ratio | $ratio_ref | $one0 / $oneN / $one0b | $all_s | $list_ms | $state_ms | $bc_all | $bc_one | $del_s | $(per $(( kernel + priv ))) | $(per $(( slab1 - slab0 ))) | $(per $(( pt1 - pt0 ))) | $(per $(( ks1 - ks0 ))) | $(per $(( pc1 - pc0 ))) | $(per $priv) | $(per $(( used1 - used0 ))) |" >> "$out/density.md"
done
{
  echo; echo "Time (ms) of each block of 100 create+start calls, and under it the machine reference timed among them (100 runs of \`tally --version\`):"; echo
  nb=$(( (n + 99) / 100 ))
  printf '| runtime |'; i=1; while [ $i -le $nb ]; do printf ' %s |' "$i"; i=$((i + 1)); done; echo
  printf '|---|'; i=1; while [ $i -le $nb ]; do printf -- '---|'; i=$((i + 1)); done; echo
  cat "$blocks_md"
} >> "$out/density.md"
rm -f "$blocks_md"
cat "$out/density.md"
