#!/usr/bin/env bash
# Builds the dashboard page (web/) into runner/assets/: index.html, app.js (the page and
# Chart.js, bundled and minified by esbuild) and app.css. `spotmill serve` embeds these
# files, so they are committed: `cargo build` needs no node or npm.
#
# Usage: scripts/build-web.sh           rebuild runner/assets/ (commit the result)
#        scripts/build-web.sh --check   build into a temporary folder; fail if runner/assets/
#                                       differs (the committed bundle is stale)
# Needs node >= 20 and npm; installs web/node_modules with `npm ci` from the lock file.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
web="$repo/web"
assets="$repo/runner/assets"

command -v node >/dev/null && command -v npm >/dev/null || {
    echo "error: node and npm are needed to build the page (apt-get install nodejs npm)" >&2
    exit 1
}

# npm ci when node_modules is missing or older than the lock file.
if [[ ! -f "$web/node_modules/.package-lock.json" || "$web/package-lock.json" -nt "$web/node_modules/.package-lock.json" ]]; then
    echo "== npm ci (web/)" >&2
    (cd "$web" && npm ci --no-audit --no-fund --loglevel=error)
fi

check=false
out="$assets"
if [[ "${1:-}" == "--check" ]]; then
    check=true
    out="$(mktemp -d)"
    trap 'rm -rf "$out"' EXIT
fi
mkdir -p "$out"

esbuild="$web/node_modules/.bin/esbuild"
"$esbuild" "$web/src/main.js" --bundle --minify --format=iife --target=es2020 \
    --legal-comments=eof --log-level=warning --outfile="$out/app.js"
"$esbuild" "$web/src/style.css" --minify --log-level=warning --outfile="$out/app.css"
cp "$web/src/index.html" "$out/index.html"

if $check; then
    if ! diff -r -q "$assets" "$out" >&2; then
        echo "error: runner/assets/ is stale: run scripts/build-web.sh and commit runner/assets/" >&2
        exit 1
    fi
    echo "runner/assets/ is up to date" >&2
else
    for f in index.html app.js app.css; do
        printf '%8d bytes  runner/assets/%s\n' "$(wc -c <"$out/$f")" "$f"
    done
fi
