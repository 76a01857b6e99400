#!/usr/bin/env bash
# Builds the JavaScript example analysis (guest-sdk/javascript/os-distribution.js, on the
# SDK module guest-sdk/javascript/spotmill.js) into <out>/os-distribution-javascript.wasm
# with componentize-js (StarlingMonkey) from npm, through its JS API (the jco CLI fails
# here: see shared notes).
#
# Usage: scripts/build-guests-javascript.sh [OUT_DIR]
#          (default: ${CARGO_TARGET_DIR:-<repo>/target}/analyses)
# Env:   SPOTMILL_TOOLS_DIR  where toolchains are installed
#                            (default: $HOME/.cache/spotmill/tools)
# Needs: node 20+ and npm, and the npm registry on the first run only. A second run with
#        the toolchain installed asks no registry. Rebuilding is idempotent.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=lib/guest-build-stamp.sh
source "$repo/scripts/lib/guest-build-stamp.sh"
out="${1:-${CARGO_TARGET_DIR:-$repo/target}/analyses}"
tools="${SPOTMILL_TOOLS_DIR:-$HOME/.cache/spotmill/tools}"

componentize_js_version=0.23.0
# preview2-shim 0.26 no longer preopens `/`, which breaks componentize here: pin 0.25.0,
# for jco's copy too (npm `overrides`).
preview2_shim_version=0.25.0
prefix="$tools/componentize-js-$componentize_js_version"

for tool in node npm; do
    command -v "$tool" >/dev/null || { echo "error: '$tool' not found: install node 20+ and npm" >&2; exit 1; }
done

start=$SECONDS
# The stamp is written last: a half-finished install (interrupted, offline) is redone.
if [[ ! -f "$prefix/.spotmill-complete" ]]; then
    echo "installing componentize-js $componentize_js_version into $prefix" >&2
    rm -rf "$prefix"
    mkdir -p "$prefix"
    cat >"$prefix/package.json" <<JSON
{
  "private": true,
  "dependencies": {
    "@bytecodealliance/componentize-js": "$componentize_js_version",
    "@bytecodealliance/preview2-shim": "$preview2_shim_version"
  },
  "overrides": {
    "@bytecodealliance/preview2-shim": "$preview2_shim_version"
  }
}
JSON
    (cd "$prefix" && npm install --no-audit --no-fund --loglevel=error)
    touch "$prefix/.spotmill-complete"
    echo "toolchain ready in $((SECONDS - start)) s" >&2
fi

mkdir -p "$out"
name=os-distribution-javascript.wasm

# Skip the build when nothing it reads changed (this script, the toolchain versions, the
# WIT, the SDK and the example). The build is not reproducible (a new hash each time): a
# needless rebuild would also cost the runner a cold compile (20-50 s) and a new cached
# artifact (~40 MB). SPOTMILL_FORCE_BUILD=1 rebuilds anyway.
inputs="$(guest_inputs_hash "$componentize_js_version $preview2_shim_version" "${BASH_SOURCE[0]}" "$repo/guest-sdk/javascript" -name '*.js')"
stamp="$out/.$name.inputs"
if guest_up_to_date "$out" "$name" "$inputs"; then
    exit 0
fi
echo "building $name" >&2
build_start=$SECONDS

# Run from the prefix so that the bare import resolves in its node_modules.
# `http` and `fetch-event` are off: they import wasi:http, which the runner does not link.
# stdio, random and clocks stay: wasi:cli/io/random/clocks are linked (nothing granted).
(cd "$prefix" && node --input-type=module - \
    "$repo/guest-sdk/javascript/os-distribution.js" \
    "$repo/wit" analysis "$out/.$name.tmp") <<'JS'
import { componentize } from "@bytecodealliance/componentize-js";
import { writeFile } from "node:fs/promises";

const [sourcePath, witPath, worldName, output] = process.argv.slice(2);
const { component } = await componentize({
  sourcePath,
  witPath,
  worldName,
  disableFeatures: ["http", "fetch-event"],
});
await writeFile(output, component);
JS

head="$(od -An -tx1 -N8 "$out/.$name.tmp" | tr -d ' \n')"
if [[ "$head" != "0061736d0d000100" ]]; then
    echo "error: componentize-js did not write a component (first bytes: $head)" >&2
    exit 1
fi
mv -f "$out/.$name.tmp" "$out/$name"
echo "$inputs" >"$stamp"
printf '  %8d  %s  (%d s)\n' "$(stat -c %s "$out/$name")" "$out/$name" "$((SECONDS - build_start))" >&2
