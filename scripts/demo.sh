#!/usr/bin/env bash
# The demo on a fresh machine: builds Spotmill and the os-distribution analysis, generates
# realistic telemetry logs, runs the analysis over them on every core, shows the result.
#
# Then runs the telemetry dashboard analysis over the same logs and says how to look at it.
#
# Usage: scripts/demo.sh [SUBMISSIONS]      (default 20000, about 1 GB uncompressed)
# Env:   CARGO_TARGET_DIR  (default <repo>/target)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"
export SPOTMILL_WASM_TARGET_DIR="${SPOTMILL_WASM_TARGET_DIR:-$CARGO_TARGET_DIR/wasm}"
submissions="${1:-20000}"
demo="$CARGO_TARGET_DIR/demo"
data="$demo/data-$submissions"
out="$demo/out"
dashboard="$demo/dashboard"

echo "== building spotmill (release; the first build compiles wasmtime: 15-35 minutes on 2 cores)" >&2
cargo build --release -p spotmill
spotmill="$CARGO_TARGET_DIR/release/spotmill"

echo "== building the analyses (WebAssembly components)" >&2
bash scripts/build-analyses.sh "$CARGO_TARGET_DIR/analyses" >/dev/null

if [ ! -f "$data.done" ]; then
    echo "== generating $submissions submissions into $data" >&2
    rm -rf "$data"
    "$spotmill" gen --out "$data" --submissions "$submissions" --seed 1
    touch "$data.done"
fi

# The filter keeps saved-session pings of the prerelease channels (positional, like the
# production schema: reason, app, channel, version, build id, submission date).
filter="$demo/filter.json"
cat > "$filter" <<'JSON'
{
  "version": 1,
  "dimensions": [
    {"field_name": "reason", "allowed_values": ["saved-session"]},
    {"field_name": "appName", "allowed_values": "*"},
    {"field_name": "appUpdateChannel", "allowed_values": ["nightly", "aurora", "beta"]},
    {"field_name": "appVersion", "allowed_values": "*"},
    {"field_name": "appBuildID", "allowed_values": "*"},
    {"field_name": "submission_date", "allowed_values": "*"}
  ]
}
JSON

echo "== spotmill run: os-distribution over saved-session pings of nightly, aurora and beta" >&2
rm -rf "$out"
status=0
"$spotmill" run --analysis "$CARGO_TARGET_DIR/analyses/os-distribution.wasm" \
    --input "$data" --filter "$filter" --output "$out" || status=$?

echo
echo "== result: $out/os-distribution.json"
cat "$out/os-distribution.json"
[ "$status" -eq 0 ] || exit "$status"

echo
echo "== spotmill run: the telemetry dashboard's histogram aggregates over every submission" >&2
rm -rf "$dashboard"
# For 20,000 submissions the dashboard's merged state outgrows the default 512 MiB memory
# cap of one instance (the merge needs about 1 GiB), and its published files (hundreds of
# MB of JSON) the default 256 MiB cap on what one call returns.
"$spotmill" run --analysis "$CARGO_TARGET_DIR/analyses/dashboard.wasm" \
    --input "$data" --output "$dashboard" --memory-mb 2048 --max-output-mb 2048

echo
echo "== look at the dashboard:"
echo "   $spotmill serve --dir $dashboard"
echo "   then open http://127.0.0.1:8080/ in a browser"
