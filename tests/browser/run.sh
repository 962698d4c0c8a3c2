#!/usr/bin/env bash
# The web UI's tests in a real headless Chromium (Debian's), driven by playwright-core,
# against the real binary and a real nginx. Installs what is missing, builds, runs.
#
#   tests/browser/run.sh                 run the browser tests (exit status: theirs)
#   tests/browser/run.sh --screenshots   also rewrite docs/screenshots/*.png afterwards
#   tests/browser/run.sh FILE...         run only these test files
#
# Environment: ONEOFF_TEST_VERBOSE=1 shows the server's log; CHROMIUM=/path overrides the browser.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

screenshots=false
files=()
for arg in "$@"; do
    case "$arg" in
        --screenshots) screenshots=true ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) files+=("$arg") ;;
    esac
done

say() { echo "browser tests: $*" >&2; }

install_debian_packages() {
    local sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    $sudo apt-get install -y --no-install-recommends "$@" >/dev/null 2>&1 \
        || { $sudo apt-get update >/dev/null && $sudo apt-get install -y --no-install-recommends "$@" >/dev/null; }
}

if [ -z "${CHROMIUM:-}" ] && [ ! -x /usr/bin/chromium ]; then
    say "installing Debian's chromium"
    install_debian_packages chromium
fi
if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
    say "installing nginx-light"
    install_debian_packages nginx-light || install_debian_packages nginx
fi
if ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    say "installing postgresql"
    install_debian_packages postgresql
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    say "node and npm are required (Node.js 20 or later)"
    exit 1
fi

# node_modules is stale when the lock file changed since the last `npm ci`
# (npm writes node_modules/.package-lock.json on every install).
modules="$here/node_modules"
if [ ! -d "$modules/playwright-core" ] || [ ! -f "$modules/.package-lock.json" ] \
    || [ "$here/package-lock.json" -nt "$modules/.package-lock.json" ]; then
    say "npm ci"
    (cd "$here" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi

say "cargo build -p oneoff -p oneoff-testpg"
# oneoff-testpg's holder gives the replica tests a real throwaway PostgreSQL.
cargo build -p oneoff -p oneoff-testpg --bins --locked >&2

if [ "${#files[@]}" -eq 0 ]; then files=(tests/browser/*.test.js); fi
started=$(date +%s)
status=0
node --test --test-concurrency=1 "${files[@]}" || status=$?
say "finished in $(( $(date +%s) - started )) s with exit status $status"
if [ "$status" -ne 0 ]; then
    exit "$status"
fi

if $screenshots; then
    node "$here/screenshots.js"
fi
