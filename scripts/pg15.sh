#!/usr/bin/env bash
# Run a command against a PostgreSQL 15 from Debian's packages, started by our launcher.
#
#   scripts/pg15.sh .venv/bin/pytest tests/integration
#
# Starts /usr/lib/postgresql/15/bin (installing postgresql-15 with apt-get when it is missing)
# through `python -m electric_trio.pg.embedded` in a temporary directory, runs the command with
# DATABASE_URL exported, stops the server and exits with the command's exit code.
# PYTHON overrides the interpreter (default: the repository's .venv, else python3).
set -euo pipefail

if [ "$#" -eq 0 ]; then
    echo "usage: $0 COMMAND [ARG...]" >&2
    exit 2
fi

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bindir=/usr/lib/postgresql/15/bin
python="${PYTHON:-}"
if [ -z "$python" ]; then
    if [ -x "$repo/.venv/bin/python" ]; then python="$repo/.venv/bin/python"; else python=python3; fi
fi

if [ ! -x "$bindir/postgres" ]; then
    echo "pg15.sh: installing postgresql-15" >&2
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo=sudo; fi
    $sudo apt-get update
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y postgresql-15
fi

workdir="$(mktemp -d "${TMPDIR:-/tmp}/electric-pg15.XXXXXX")"
server_pid=""
cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$workdir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$python" -m electric_trio.pg.embedded --bindir "$bindir" --data-dir "$workdir/data" --fast \
    >"$workdir/launcher.out" 2>"$workdir/launcher.err" &
server_pid=$!

url=""
for _ in $(seq 1 900); do
    url="$(sed -n 's/^DATABASE_URL=//p' "$workdir/launcher.out")"
    if [ -n "$url" ]; then break; fi
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "pg15.sh: the PostgreSQL 15 launcher exited:" >&2
        cat "$workdir/launcher.err" >&2
        exit 1
    fi
    sleep 0.1
done
if [ -z "$url" ]; then
    echo "pg15.sh: PostgreSQL 15 did not start within 90 s" >&2
    cat "$workdir/launcher.err" >&2
    exit 1
fi

echo "pg15.sh: PostgreSQL 15 at $url" >&2
status=0
DATABASE_URL="$url" "$@" || status=$?
exit "$status"
