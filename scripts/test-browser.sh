#!/usr/bin/env bash
# The dashboard page in a real browser, end to end: generates logs (300 submissions), runs
# the dashboard analysis over them, serves the output with `spotmill serve`, and drives
# headless Chromium (Debian's `chromium` package, through playwright-core: no browser is
# downloaded) over it and over a hand-crafted folder (web/test/browser.test.js). Also
# checks that the committed bundle (runner/assets/) is built from web/src/.
#
# Usage: scripts/test-browser.sh
# Env:   CARGO_TARGET_DIR          (default <repo>/target) the spotmill binary is
#                                  $CARGO_TARGET_DIR/release/spotmill (built if missing)
#        SPOTMILL_BIN              use this binary instead
#        SPOTMILL_ANALYSES_DIR     where dashboard.wasm is (default $CARGO_TARGET_DIR/analyses;
#                                  built with scripts/build-analyses.sh if missing)
#        CHROMIUM                  the browser (default /usr/bin/chromium)
# Screenshots: $CARGO_TARGET_DIR/browser/dashboard.png and dashboard-fixture.png.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"
export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"

if [[ ! -x "$CHROMIUM" ]]; then
    echo "error: no Chromium at $CHROMIUM: install Debian's package (apt-get install -y chromium) or set CHROMIUM" >&2
    exit 1
fi
for tool in node npm; do
    command -v "$tool" >/dev/null || { echo "error: '$tool' is missing (node >= 20 and npm are needed)" >&2; exit 1; }
done

echo "== npm ci (web/)" >&2
(cd web && npm ci --no-audit --no-fund --loglevel=error)

echo "== the committed page bundle matches web/src" >&2
bash scripts/build-web.sh --check

bin="${SPOTMILL_BIN:-$CARGO_TARGET_DIR/release/spotmill}"
if [[ -z "${SPOTMILL_BIN:-}" ]]; then
    echo "== cargo build --release -p spotmill" >&2
    cargo build --release -p spotmill
fi
analyses="${SPOTMILL_ANALYSES_DIR:-$CARGO_TARGET_DIR/analyses}"
if [[ ! -f "$analyses/dashboard.wasm" ]]; then
    echo "== building the analyses" >&2
    SPOTMILL_WASM_TARGET_DIR="${SPOTMILL_WASM_TARGET_DIR:-$CARGO_TARGET_DIR/wasm}" bash scripts/build-analyses.sh "$analyses"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "== generating 300 submissions and running the dashboard analysis" >&2
"$bin" gen --out "$work/logs" --submissions 300 --seed 3 >&2
"$bin" run --analysis "$analyses/dashboard.wasm" --input "$work/logs" --output "$work/out" >/dev/null

echo "== the browser test" >&2
export SPOTMILL_BIN="$bin" DASHBOARD_OUT="$work/out" SCREENSHOT_DIR="$CARGO_TARGET_DIR/browser"
cd web
node --test --test-reporter=spec test/browser.test.js
