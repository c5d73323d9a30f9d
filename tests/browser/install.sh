#!/usr/bin/env bash
# What tests/integration/test_browser*.py needs, installed once per machine:
#   - Debian's chromium at /usr/bin/chromium (apt-get install when missing; Playwright's own
#     browser download is not used)
#   - playwright-core from tests/browser/package-lock.json
#   - examples/todo-web's packages from its package-lock.json, and its Vite build (dist/)
#
# Each step leaves a stamp with the hash of what it was made from (lock file, sources, Node
# version); while the stamps match, this returns at once. Used by scripts/test.sh and by the
# browser tests' fixture.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
app="$(cd "$here/../../examples/todo-web" && pwd)"
for tool in node npm; do
    command -v "$tool" >/dev/null || { echo "tests/browser: $tool not found (the tests need Node 20 and npm)" >&2; exit 1; }
done

chromium=/usr/bin/chromium
node_version=$(node --version)
browser_want=$( (cat "$here/package-lock.json"; echo "$node_version") | sha256sum | cut -d' ' -f1)
app_want=$( (cat "$app/package-lock.json"; echo "$node_version") | sha256sum | cut -d' ' -f1)
build_want=$( (cd "$app" && find index.html vite.config.ts package.json package-lock.json src \
    -type f -print0 | sort -z | xargs -0 sha256sum; echo "$node_version") | sha256sum | cut -d' ' -f1)
browser_stamp="$here/node_modules/.electric-trio-installed"
app_stamp="$app/node_modules/.electric-trio-installed"
build_stamp="$app/dist/.electric-trio-built"

matches() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }
up_to_date() {
    [ -x "$chromium" ] && matches "$browser_stamp" "$browser_want" \
        && matches "$app_stamp" "$app_want" && matches "$build_stamp" "$build_want"
}

up_to_date && exit 0
# one install at a time (several test runs may start together)
exec 9<"$here"
flock 9
up_to_date && exit 0

if [ ! -x "$chromium" ]; then
    echo "tests/browser: installing Debian's chromium" >&2
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo=sudo; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi
"$chromium" --version >/dev/null 2>&1 || { echo "tests/browser: $chromium does not run" >&2; exit 1; }

# --ignore-scripts: no install script is needed (electric-sql would otherwise build
# better-sqlite3 and prisma would try to download engines; Vite's bundler ships as a package)
if ! matches "$browser_stamp" "$browser_want"; then
    echo "tests/browser: installing playwright-core from package-lock.json" >&2
    (cd "$here" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
    echo "$browser_want" >"$browser_stamp"
fi
if ! matches "$app_stamp" "$app_want"; then
    echo "tests/browser: installing examples/todo-web from package-lock.json" >&2
    (cd "$app" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
    echo "$app_want" >"$app_stamp"
fi
if ! matches "$build_stamp" "$build_want"; then
    echo "tests/browser: building examples/todo-web (vite build)" >&2
    (cd "$app" && npx --no-install vite build --logLevel warn)
    echo "$build_want" >"$build_stamp"
fi
echo "tests/browser: ready" >&2
