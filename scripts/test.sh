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

step "pytest (embedded PostgreSQL 18)"
"$BIN/pytest" "$@"

step "pytest integration subset against PostgreSQL 15 (Debian)"
scripts/pg15.sh "$BIN/pytest" tests/integration -m "not slow" "$@"
