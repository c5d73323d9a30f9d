#!/usr/bin/env bash
# Install the official client (package-lock.json) into tests/node/node_modules, once per machine.
#
# A stamp in node_modules records the hash of the lock file and the Node version the native
# better-sqlite3 module was built for; while both match, this returns at once. Used by ./run's
# bootstrap and by the `node_client_dir` fixture of tests/official_client.py.
set -euo pipefail
cd "$(dirname "$0")"
for tool in node npm; do
    command -v "$tool" >/dev/null || { echo "tests/node: $tool not found (the tests need Node 20 and npm)" >&2; exit 1; }
done

stamp=node_modules/.electric-trio-installed
want=$( (cat package-lock.json; node --version) | sha256sum | cut -d' ' -f1)
up_to_date() { [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; }

up_to_date && exit 0
# one install at a time (several test runs may start together)
exec 9<.
flock 9
up_to_date && exit 0

echo "tests/node: installing electric-sql from package-lock.json (builds better-sqlite3, ~1-2 min)" >&2
# node-gyp would download Node's headers; Debian's nodejs ships them in /usr/include/node
if [ -z "${npm_config_nodedir:-}" ] && [ -f /usr/include/node/node.h ]; then
    export npm_config_nodedir=/usr
fi
# No install scripts but better-sqlite3's: prisma's (a dependency of the generator we do not
# run) would try to download engines.
npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
npm rebuild better-sqlite3 --loglevel=error
node -e "new (require('better-sqlite3'))(':memory:').prepare('SELECT 1').get()"
echo "$want" >"$stamp"
echo "tests/node: installed" >&2
