#!/usr/bin/env bash
# Builds @NAME@.wasm, a Spotmill analysis component, from @NAME@.js and the SDK module
# spotmill.js (this folder) with componentize-js (StarlingMonkey), through its JS API.
# Made by `spotmill new --lang javascript @NAME@`.
#
# componentize-js is the one the Spotmill repository's scripts/build-guests-javascript.sh
# installs (its version is read from that script), in an npm prefix under the tools dir.
#
# Usage: bash build.sh        (from any directory; needs node 20+)
# Env:   SPOTMILL_TOOLS_DIR   where toolchains are installed (default: $HOME/.cache/spotmill/tools)
#        SPOTMILL_WIT         the WIT folder (default: the one given to `spotmill new`)
#        SPOTMILL_NO_INSTALL  1: fail when the toolchain is missing instead of installing it
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
name=@NAME@
repo=@REPO_SH@
wit="${SPOTMILL_WIT:-@WIT_SH@}"
script="$repo/scripts/build-guests-javascript.sh"
tools="${SPOTMILL_TOOLS_DIR:-$HOME/.cache/spotmill/tools}"

command -v node >/dev/null || { echo "error: 'node' not found: install node 20+ and npm" >&2; exit 1; }

# script_var <name>: a `name=value` line of the repository's build script.
script_var() {
    local value
    value="$(sed -n "s/^$1=//p" "$script" 2>/dev/null | head -n1)"
    if [[ -z "$value" ]]; then
        echo "error: cannot read $1 from $script (is the Spotmill repository still at $repo?)" >&2
        exit 1
    fi
    echo "$value"
}
componentize_js_version="$(script_var componentize_js_version)"
prefix="$tools/componentize-js-$componentize_js_version"

if [[ ! -f "$prefix/.spotmill-complete" ]]; then
    if [[ "${SPOTMILL_NO_INSTALL:-}" == 1 ]]; then
        echo "error: componentize-js $componentize_js_version is not installed in $prefix:" \
            "run \`bash $script\` (it installs it; SPOTMILL_TOOLS_DIR=$tools)" >&2
        exit 1
    fi
    echo "componentize-js is missing: installing it with $script (which also builds its example)" >&2
    scratch="$(mktemp -d)"
    SPOTMILL_TOOLS_DIR="$tools" bash "$script" "$scratch"
    rm -rf "$scratch"
fi

start=$SECONDS
# componentize-js maps the folder of the source module into the build: build from a copy
# of the folder's modules (the analysis imports the SDK as ./spotmill.js).
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir "$work/src"
cp "$here"/*.js "$work/src/"

# Run from the prefix so that the bare import resolves in its node_modules.
# `http` and `fetch-event` are off: they import wasi:http, which the runner does not link.
(cd "$prefix" && node --input-type=module - \
    "$work/src/$name.js" "$wit" analysis "$work/out.wasm") <<'JS'
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

head="$(od -An -tx1 -N8 "$work/out.wasm" | tr -d ' \n')"
if [[ "$head" != "0061736d0d000100" ]]; then
    echo "error: componentize-js did not write a component (first bytes: $head)" >&2
    exit 1
fi
cp "$work/out.wasm" "$here/.$name.wasm.tmp"
mv -f "$here/.$name.wasm.tmp" "$here/$name.wasm"
printf '  %8d  %s  (%d s)\n' "$(stat -c %s "$here/$name.wasm")" "$here/$name.wasm" "$((SECONDS - start))" >&2
