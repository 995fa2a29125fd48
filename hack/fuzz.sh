#!/bin/sh
# Coverage-guided fuzzing of the config path with libFuzzer, on the stable toolchain: the
# sanitizer-coverage instrumentation cargo-fuzz would add is set here by hand (-C passes and
# -C llvm-args are stable), and --target keeps it off build scripts and proc-macros.
#
#   hack/fuzz.sh SECONDS [TARGET...]     default targets: config annotations
#
# Each target starts from its seed corpus in fuzz/corpus/TARGET (configs from the project's
# tests) and target/fuzz/corpus/TARGET, where the inputs it finds accumulate between runs. A crash, a panic or a timeout fails the run; the input is left in target/fuzz/artifacts.
set -eu
cd "$(dirname "$0")/.."
seconds=${1:?usage: hack/fuzz.sh SECONDS [TARGET...]}
shift
[ $# -gt 0 ] || set -- config annotations
triple=x86_64-unknown-linux-gnu
export CARGO_TARGET_DIR="$PWD/target/fuzz"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing"
cargo build --locked --release --manifest-path fuzz/Cargo.toml --target "$triple" --bins
mkdir -p target/fuzz/artifacts
for t in "$@"; do
    corpus=target/fuzz/corpus/$t
    mkdir -p "$corpus"
    log=target/fuzz/$t.log
    echo "== fuzzing $t for ${seconds}s (corpus $corpus, log $log)"
    rc=0
    "$CARGO_TARGET_DIR/$triple/release/$t" "$corpus" fuzz/corpus/"$t" \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -artifact_prefix=target/fuzz/artifacts/"$t"- -print_final_stats=1 >"$log" 2>&1 || rc=$?
    grep -E '^(stat::|#[0-9]+ +DONE)|ERROR|panicked|SUMMARY' "$log" || true
    if [ "$rc" -ne 0 ]; then
        tail -n 40 "$log"
        echo "fuzz target $t failed (exit $rc); the input is in target/fuzz/artifacts/" >&2
        exit "$rc"
    fi
done
