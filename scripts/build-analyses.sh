#!/usr/bin/env bash
# Builds the guest analyses (analyses/) into WebAssembly components:
#   <out>/os-distribution.wasm, <out>/dashboard.wasm, <out>/hostile-<feature>.wasm (one per feature of
#   analyses/hostile/Cargo.toml, `default` excepted).
#
# Usage: scripts/build-analyses.sh [OUT_DIR]      (default: <repo>/target/analyses)
# Env:   SPOTMILL_WASM_TARGET_DIR  cargo target dir (default: <repo>/target/wasm)
# Works from any directory; rebuilding is idempotent (cargo caches, files are replaced).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$repo/target/analyses}"
export CARGO_TARGET_DIR="${SPOTMILL_WASM_TARGET_DIR:-$repo/target/wasm}"
target=wasm32-wasip2
manifest="$repo/analyses/Cargo.toml"
built="$CARGO_TARGET_DIR/$target/release"

if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
    echo "installing the $target target" >&2
    rustup target add "$target"
fi

mkdir -p "$out"

# The component magic: "\0asm", version 0x000d, layer 0x0001 (a core module has 01 00 00 00).
check_component() {
    local file="$1" head
    if command -v xxd >/dev/null; then
        head="$(xxd -p -l 8 "$file")"
    else
        head="$(od -An -tx1 -N8 "$file" | tr -d ' \n')"
    fi
    if [[ "$head" != "0061736d0d000100" ]]; then
        echo "error: $file is not a component (first bytes: $head)" >&2
        exit 1
    fi
}

# build <package> <output name> [feature]
build() {
    local package="$1" name="$2" feature="${3:-}"
    local args=(build --release --target "$target" --manifest-path "$manifest" -p "$package")
    if [[ -n "$feature" ]]; then
        args+=(--features "$feature")
    fi
    echo "building $name" >&2
    cargo "${args[@]}"
    local artifact="$built/${package//-/_}.wasm"
    check_component "$artifact"
    # Copy through a temporary name so a reader never sees a half-written file.
    cp "$artifact" "$out/.$name.tmp"
    mv -f "$out/.$name.tmp" "$out/$name"
    names+=("$name")
}

names=()

build os-distribution os-distribution.wasm
build dashboard dashboard.wasm

# The hostile features: the keys of [features] in hostile/Cargo.toml, but `default`.
mapfile -t features < <(
    awk '/^\[/ { in_features = ($0 == "[features]"); next }
         in_features && /^[A-Za-z0-9_-]+[ \t]*=/ { sub(/[ \t]*=.*/, ""); if ($0 != "default") print }' \
        "$repo/analyses/hostile/Cargo.toml"
)
if [[ ${#features[@]} -eq 0 ]]; then
    echo "error: no features found in analyses/hostile/Cargo.toml" >&2
    exit 1
fi
for feature in "${features[@]}"; do
    build hostile "hostile-$feature.wasm" "$feature"
done

echo "components in $out:"
for name in "${names[@]}"; do
    printf '  %8d  %s\n' "$(stat -c %s "$out/$name")" "$name"
done
