#!/usr/bin/env bash
# Runs every check the project has: formatting, clippy, and all tests (unit and
# integration, against guest components built from source in analyses/).
#
# Usage: scripts/test.sh [extra cargo test args]
# Env:   CARGO_TARGET_DIR  (default <repo>/target; CI points it at a persistent cache)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"
export SPOTMILL_WASM_TARGET_DIR="${SPOTMILL_WASM_TARGET_DIR:-$CARGO_TARGET_DIR/wasm}"

for tool in xz lzma; do
    command -v "$tool" >/dev/null || { echo "missing '$tool': install xz-utils (apt-get install xz-utils)" >&2; exit 1; }
done

echo "== guests: building every analysis from source (Rust, Python, JavaScript, C)" >&2
export SPOTMILL_ANALYSES_DIR="$CARGO_TARGET_DIR/analyses"
bash scripts/build-analyses.sh "$SPOTMILL_ANALYSES_DIR"
for language in python javascript c; do
    bash "scripts/build-guests-$language.sh" "$SPOTMILL_ANALYSES_DIR"
done

echo "== cargo fmt --check" >&2
cargo fmt --all -- --check

# One profile (release) for clippy, tests, the demo and the benchmark: wasmtime is
# compiled once, and guest code runs at production speed in the tests.
echo "== cargo clippy" >&2
cargo clippy --release --workspace --all-targets -- -D warnings

echo "== local S3+SQS (ministack) for the fleet tests" >&2
eval "$(bash scripts/local-aws.sh start --watch-pid $$)"
trap 'bash scripts/local-aws.sh stop >/dev/null 2>&1 || true' EXIT

echo "== cargo test" >&2
cargo test --release --workspace "$@"

echo "== web: unit tests of the dashboard's statistics (node:test)" >&2
node --test web/test/stats.test.js

echo "== web: the dashboard page in headless Chromium" >&2
# The binary `cargo test` just built: a `cargo build -p spotmill` here would unify features
# differently from the workspace build and recompile wasmtime for nothing.
SPOTMILL_BIN="$CARGO_TARGET_DIR/release/spotmill" bash scripts/test-browser.sh
