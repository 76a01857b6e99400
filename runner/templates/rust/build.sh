#!/usr/bin/env bash
# Builds @NAME@.wasm, a Spotmill analysis component, from this crate:
#   cargo build --release --target wasm32-wasip2, then a copy of the .wasm next to this script.
# Made by `spotmill new --lang rust @NAME@`.
#
# Usage: bash build.sh        (from any directory)
# Env:   CARGO_TARGET_DIR  cargo's target dir (default: ./target)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
name=@NAME@
target=wasm32-wasip2
cd "$here"

if command -v rustup >/dev/null && ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
    echo "installing the $target target" >&2
    rustup target add "$target"
fi

cargo build --release --target "$target"

# Where cargo wrote it (honours CARGO_TARGET_DIR and cargo's config).
target_dir="$(cargo metadata --no-deps --format-version 1 |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
artifact="${target_dir:-${CARGO_TARGET_DIR:-$here/target}}/$target/release/@LIB@.wasm"

# The component magic: "\0asm", version 0x000d, layer 0x0001 (a core module has 01 00 00 00).
head="$(od -An -tx1 -N8 "$artifact" | tr -d ' \n')"
if [[ "$head" != "0061736d0d000100" ]]; then
    echo "error: $artifact is not a component (first bytes: $head)" >&2
    exit 1
fi
# Copy through a temporary name so a reader never sees a half-written file.
cp "$artifact" "$here/.$name.wasm.tmp"
mv -f "$here/.$name.wasm.tmp" "$here/$name.wasm"
printf '  %8d  %s\n' "$(stat -c %s "$here/$name.wasm")" "$here/$name.wasm" >&2
