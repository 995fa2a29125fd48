#!/bin/sh
# bench-migrate.sh TALLY [REPS [RATE]]: the downtime of `tally migrate`, in the test VM (CRIU
# cannot dump on the development host's kernel: docs/compatibility.md). A container keeps
# rewriting a 64 MiB working set, page after page round the whole set, at RATE MiB/s (default
# 16; hack/bench-migrate-dirty.c) and is migrated to another state root over CRIU's page server
# on loopback, one-shot (no pre-dump) and after 3 pre-dump rounds, REPS times each (default 3).
# For each: tally's report (each round's time and the pages the page server received, the
# restore, the downtime from the final dump's start to the restore's end) and the longest stop
# the workload itself saw between two of its 1 ms steps. Results: the raw lines on stdout and
# a markdown table (medians) in target/bench/migrate.md.
set -eu
tally=$(realpath "$1")
reps=${2:-3}
rate=${3:-16}
here=$(cd "$(dirname "$0")" && pwd)
out=$(realpath -m "$here/../target/bench")
mkdir -p "$out"
payload=$(mktemp -d /tmp/tally-bench-migrate.XXXXXX)
chmod 0755 "$payload"
trap 'rm -rf "$payload"' EXIT
cp "$tally" "$payload/tally"
"$here/vm/guest-tools.sh" "$payload"
"$here/make-bundle.sh" "$payload/bundle" "$tally" >/dev/null
gcc -static -O2 -Wall -o "$payload/bundle/rootfs/dirty" "$here/bench-migrate-dirty.c"
sed -i "s|\"sh\"$|\"/dirty\", \"64\", \"$rate\"|" "$payload/bundle/config.json"

cat > "$payload/run" <<'SCRIPT'
#!/bin/sh
# In the guest: REPS migrations for each number of pre-dump rounds, one result line each.
reps=$1
export PATH=/payload/gnu:/payload/bin:$PATH
t() { /payload/tally --criu /payload/bin/criu "$@"; }
for rounds in 0 3; do
  i=0
  while [ "$i" -lt "$reps" ]; do
    i=$((i + 1))
    t --root /run/mig-a run -d --bundle /payload/bundle m </dev/null >/dev/null 2>&1 || exit 1
    # Warm: the whole set touched, a few sweeps under way.
    sleep 3
    report=$(t --root /run/mig-a migrate --to-root /run/mig-b --pre-dump-rounds "$rounds" m) || exit 1
    sleep 1
    echo "BENCH-MIGRATE: {\"pre_dump_rounds\": $rounds, \"gap_us\": $(cat /payload/bundle/rootfs/gap), \"report\": $(echo "$report" | tr -d '\n')}"
    t --root /run/mig-b delete --force m || exit 1
  done
done
SCRIPT
chmod +x "$payload/run"
log=$out/migrate-console.log
TALLY_VM_MEM=${TALLY_VM_MEM:-2048} TALLY_VM_LOG=$log "$here/vm/run.sh" "$payload" 900 "$reps"
sed -n 's/^BENCH-MIGRATE: \(.*\)\r\{0,1\}$/\1/p' "$log" > "$out/migrate.jsonl"
cat "$out/migrate.jsonl"
python3 - "$out/migrate.jsonl" "$rate" > "$out/migrate.md" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
med = lambda xs: statistics.median(xs) if xs else float("nan")
print(f"64 MiB working set rewritten at {sys.argv[2]} MiB/s; medians of {len(runs) // 2} runs each\n")
print("| pre-dump rounds | downtime (ms) | workload's longest stop (ms) | final dump (ms) | final pages (MiB) | restore (ms) | pre-dump rounds (ms each) | pre-dump pages (MiB each) |")
print("|---|---|---|---|---|---|---|---|")
for n in sorted({r["pre_dump_rounds"] for r in runs}):
    rs = [r for r in runs if r["pre_dump_rounds"] == n]
    fin = [r["report"]["rounds"][-1] for r in rs]
    pre = lambda key: " / ".join(
        f"{med([r['report']['rounds'][k][key] for r in rs]) / (1 if key == 'ms' else 1 << 20):.0f}" for k in range(n)) or "-"
    print(f"| {n} | {med([r['report']['downtime_ms'] for r in rs]):.0f} | {med([r['gap_us'] for r in rs]) / 1000:.0f} "
          f"| {med([f['ms'] for f in fin]):.0f} | {med([f['page_bytes'] for f in fin]) / (1 << 20):.1f} "
          f"| {med([r['report']['restore_ms'] for r in rs]):.0f} | {pre('ms')} | {pre('page_bytes')} |")
PY
cat "$out/migrate.md"
