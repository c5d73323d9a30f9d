#!/usr/bin/env bash
# Every check CI makes, fastest first. `./run test` installs everything and then runs this.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${ELECTRIC_VENV:-.venv}"
BIN="$VENV/bin"
step() { printf '\n== %s\n' "$*"; }

step "cargo test (Rust core)"
cargo test -p electric-core --quiet

step "lint: cargo fmt, clippy, ruff, mypy, stubtest"
cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
"$BIN/ruff" check python tests benches
"$BIN/ruff" format --check python tests benches
"$BIN/mypy"
"$BIN/python" -m mypy.stubtest electric_trio._native

step "browser tests' setup: Debian's chromium, playwright-core, examples/todo-web and its build"
# apt-get install chromium when /usr/bin/chromium is missing, npm ci of both lock files and the
# Vite build, each skipped while its hash stamp matches (under a minute once, then nothing)
bash tests/browser/install.sh

# (installs and builds the tests need go above this line: the two passes below run at once)

# The two pytest passes run side by side: most of a test's time is spent waiting on Postgres,
# a service or a client (a pass keeps about a third of one core busy), and each pass has its
# own Postgres and only ephemeral ports. The PostgreSQL 15 pass's output is shown after.
step "pytest (embedded PostgreSQL 18), and beside it the integration tests on PostgreSQL 15"
# Beside them too, at low priority: the fuzz targets of the Rust parsers (rust/fuzz), built with
# libFuzzer's instrumentation (about 3 CPU-minutes the first time) and run 8 s each.
fuzz_log="$(mktemp "${TMPDIR:-/tmp}/electric-fuzz.XXXXXX")"
nice -n 15 rust/fuzz/run.sh >"$fuzz_log" 2>&1 &
fuzz_pid=$!
pg15_log="$(mktemp "${TMPDIR:-/tmp}/electric-pg15-pass.XXXXXX")"
# (the browser tests run in the first pass only: they test the web app, not the Postgres version)
scripts/pg15.sh "$BIN/pytest" -p no:cacheprovider tests/integration -m "not slow" \
    --ignore=tests/integration/test_browser.py "$@" \
    >"$pg15_log" 2>&1 &
pg15_pid=$!
status=0
"$BIN/pytest" "$@" || status=$?
pg15_status=0
wait "$pg15_pid" || pg15_status=$?
fuzz_status=0
wait "$fuzz_pid" || fuzz_status=$?

step "fuzz targets (rust/fuzz): their output"
cat "$fuzz_log"
rm -f "$fuzz_log"

step "pytest integration tests against PostgreSQL 15 (Debian): its output"
cat "$pg15_log"
rm -f "$pg15_log"
if [ "$status" -ne 0 ] || [ "$pg15_status" -ne 0 ]; then
    echo "pytest failed: PostgreSQL 18 pass exit $status, PostgreSQL 15 pass exit $pg15_status" >&2
    exit 1
fi
if [ "$fuzz_status" -ne 0 ]; then
    echo "fuzzing failed (exit $fuzz_status): see its output above" >&2
    exit 1
fi
