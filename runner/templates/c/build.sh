#!/usr/bin/env bash
# Builds @NAME@.wasm, a Spotmill analysis component, from @NAME@.c and the SDK
# spotmill.h + spotmill.c (this folder). Made by `spotmill new --lang c @NAME@`.
#   wit-bindgen c writes the bindings of the world `analysis` (into a scratch folder);
#   zig cc compiles for wasm32-wasi as a reactor; wasm-tools makes the component.
#
# The tools are the ones the Spotmill repository's scripts/build-guests-c.sh installs
# (their versions are read from that script) under the tools dir.
#
# Usage: bash build.sh        (from any directory)
# Env:   SPOTMILL_TOOLS_DIR   where toolchains are installed (default: $HOME/.cache/spotmill/tools)
#        SPOTMILL_WIT         the WIT folder (default: the one given to `spotmill new`)
#        SPOTMILL_NO_INSTALL  1: fail when a tool is missing instead of installing it
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
name=@NAME@
repo=@REPO_SH@
wit="${SPOTMILL_WIT:-@WIT_SH@}"
script="$repo/scripts/build-guests-c.sh"
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
zig_version="$(script_var zig_version)"
wasm_tools_version="$(script_var wasm_tools_version)"
wit_bindgen_version="$(script_var wit_bindgen_version)"
venv="$tools/c-zig-$zig_version-wasm-tools-$wasm_tools_version"
wit_bindgen_root="$tools/wit-bindgen-cli-$wit_bindgen_version"

if [[ ! -f "$venv/.spotmill-complete" || ! -f "$wit_bindgen_root/.spotmill-complete" ]]; then
    if [[ "${SPOTMILL_NO_INSTALL:-}" == 1 ]]; then
        echo "error: zig $zig_version, wasm-tools $wasm_tools_version or wit-bindgen" \
            "$wit_bindgen_version is not installed under $tools:" \
            "run \`bash $script\` (it installs them; SPOTMILL_TOOLS_DIR=$tools)" >&2
        exit 1
    fi
    echo "the C toolchain is missing: installing it with $script (which also builds its example)" >&2
    scratch="$(mktemp -d)"
    SPOTMILL_TOOLS_DIR="$tools" bash "$script" "$scratch"
    rm -rf "$scratch"
fi

zig() { "$venv/bin/python" -m ziglang "$@"; }
wasm_tools="$venv/bin/wasm-tools"

start=$SECONDS
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The bindings (analysis.h, analysis.c and analysis_component_type.o, which carries the
# component type) into a scratch folder, never into the sources.
if ! log="$("$wit_bindgen_root/bin/wit-bindgen" c "$wit" --world analysis --out-dir "$work/gen" 2>&1)"; then
    echo "$log" >&2
    exit 1
fi

# zig keeps its compiled wasi-libc in its global cache (the first build takes a while).
export ZIG_GLOBAL_CACHE_DIR="${ZIG_GLOBAL_CACHE_DIR:-$tools/zig-cache}"
# A 1 MiB stack: zig's default is 16 MiB of linear memory, all of it counted against the
# instance's memory limit. Every .c of this folder is compiled.
shopt -s nullglob
sources=("$here"/*.c)
zig cc --target=wasm32-wasi -mexec-model=reactor -Os -std=c11 -Wall -Wextra -Werror \
    -Wno-unused-parameter -Wl,-z,stack-size=1048576 -I "$work/gen" -I "$here" \
    "${sources[@]}" "$work/gen/analysis.c" "$work/gen/analysis_component_type.o" \
    -o "$work/core.wasm"
if "$wasm_tools" print "$work/core.wasm" | grep -q '(import "wasi_snapshot_preview1"'; then
    echo "error: the core module imports WASI preview 1; this build has no adapter for it:" >&2
    "$wasm_tools" print "$work/core.wasm" | grep '(import ' >&2
    exit 1
fi
"$wasm_tools" component new "$work/core.wasm" -o "$work/component.wasm"
"$wasm_tools" strip --all "$work/component.wasm" -o "$work/stripped.wasm" 2>/dev/null \
    || cp "$work/component.wasm" "$work/stripped.wasm"
"$wasm_tools" validate --features component-model "$work/stripped.wasm"

cp "$work/stripped.wasm" "$here/.$name.wasm.tmp"
mv -f "$here/.$name.wasm.tmp" "$here/$name.wasm"
printf '  %8d  %s  (%d s)\n' "$(stat -c %s "$here/$name.wasm")" "$here/$name.wasm" "$((SECONDS - start))" >&2
