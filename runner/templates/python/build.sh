#!/usr/bin/env bash
# Builds @NAME@.wasm, a Spotmill analysis component, from @MODULE@.py and the SDK module
# spotmill.py (this folder) with componentize-py. Made by `spotmill new --lang python @NAME@`.
#
# componentize-py is the one the Spotmill repository's scripts/build-guests-python.sh
# installs (its version is read from that script), in a venv under the tools dir.
#
# Usage: bash build.sh        (from any directory)
# Env:   SPOTMILL_TOOLS_DIR   where toolchains are installed (default: $HOME/.cache/spotmill/tools)
#        SPOTMILL_WIT         the WIT folder (default: the one given to `spotmill new`)
#        SPOTMILL_NO_INSTALL  1: fail when the toolchain is missing instead of installing it
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
name=@NAME@
module=@MODULE@
repo=@REPO_SH@
wit="${SPOTMILL_WIT:-@WIT_SH@}"
script="$repo/scripts/build-guests-python.sh"
tools="${SPOTMILL_TOOLS_DIR:-$HOME/.cache/spotmill/tools}"

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
componentize_py_version="$(script_var componentize_py_version)"
venv="$tools/componentize-py-$componentize_py_version"

if [[ ! -f "$venv/.spotmill-complete" ]]; then
    if [[ "${SPOTMILL_NO_INSTALL:-}" == 1 ]]; then
        echo "error: componentize-py $componentize_py_version is not installed in $venv:" \
            "run \`bash $script\` (it installs it; SPOTMILL_TOOLS_DIR=$tools)" >&2
        exit 1
    fi
    echo "componentize-py is missing: installing it with $script (which also builds its example)" >&2
    scratch="$(mktemp -d)"
    SPOTMILL_TOOLS_DIR="$tools" bash "$script" "$scratch"
    rm -rf "$scratch"
fi

start=$SECONDS
# componentize-py's interpreter writes __pycache__ next to the modules it imports: build
# from a copy, never from the sources.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$here"/*.py "$work/"
# The app module defines Mapper and Reducer; -p: the module search path baked into the
# component (the SDK and the analysis side by side).
"$venv/bin/componentize-py" -d "$wit" -w analysis componentize "$module" \
    -p "$work" -o "$work/out.wasm"

head="$(od -An -tx1 -N8 "$work/out.wasm" | tr -d ' \n')"
if [[ "$head" != "0061736d0d000100" ]]; then
    echo "error: componentize-py did not write a component (first bytes: $head)" >&2
    exit 1
fi
cp "$work/out.wasm" "$here/.$name.wasm.tmp"
mv -f "$here/.$name.wasm.tmp" "$here/$name.wasm"
printf '  %8d  %s  (%d s)\n' "$(stat -c %s "$here/$name.wasm")" "$here/$name.wasm" "$((SECONDS - start))" >&2
