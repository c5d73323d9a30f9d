#!/usr/bin/env bash
# Builds the fuzz targets with libFuzzer's coverage instrumentation (stable Rust, plain cargo:
# the flags `cargo fuzz build --sanitizer none` passes) and runs each for a bounded time.
#   rust/fuzz/run.sh                 every target for $FUZZ_SECONDS (default 8) seconds, as CI does
#   rust/fuzz/run.sh TARGET SECONDS  one target; its corpus grows in rust/fuzz/corpus/TARGET
# A crash stops the run with the input saved in rust/fuzz/artifacts/TARGET/ (replay: pass that
# file to rust/fuzz/target/<host>/release/TARGET).
set -euo pipefail
cd "$(dirname "$0")"
host=$(rustc -vV | sed -n 's/^host: //p')
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing"
# --target keeps the instrumentation off build scripts and proc macros.
cargo build --quiet --release --target "$host" --bins
targets=(pgoutput pgwire_backend pgwire_frontend satellite_frame satellite_values shape_filter)
seconds=${FUZZ_SECONDS:-8}
if [ $# -gt 0 ]; then
    targets=("$1")
    seconds=${2:-60}
fi
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    args=("corpus/$t")
    [ -d "seeds/$t" ] && args+=("seeds/$t")
    [ -f "dict/$t.dict" ] && args+=("-dict=dict/$t.dict")
    log=$(mktemp)
    if ! "target/$host/release/$t" "${args[@]}" -max_total_time="$seconds" -timeout=10 \
        -rss_limit_mb=2048 -max_len=4096 -artifact_prefix="artifacts/$t/" -print_final_stats=1 \
        >"$log" 2>&1; then
        tail -40 "$log"
        rm -f "$log"
        echo "fuzz target $t failed: the input is in rust/fuzz/artifacts/$t/" >&2
        exit 1
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    echo "fuzz $t: $runs runs in ${seconds}s ($rate/s), corpus $(ls "corpus/$t" | wc -l)"
    rm -f "$log"
done
