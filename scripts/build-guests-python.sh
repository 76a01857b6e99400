#!/usr/bin/env bash
# Builds the Python example analysis (guest-sdk/python/os_distribution.py, on the SDK
# module guest-sdk/python/spotmill.py) into <out>/os-distribution-python.wasm with
# componentize-py from PyPI.
#
# Usage: scripts/build-guests-python.sh [OUT_DIR]
#          (default: ${CARGO_TARGET_DIR:-<repo>/target}/analyses)
# Env:   SPOTMILL_TOOLS_DIR  where toolchains are installed
#                            (default: $HOME/.cache/spotmill/tools)
#        PYTHON              the Python that makes the venv (default: python3; 3.10+)
# Needs: python3 with venv and pip, and PyPI on the first run only. A second run with the
#        toolchain installed asks no registry. Rebuilding is idempotent.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=lib/guest-build-stamp.sh
source "$repo/scripts/lib/guest-build-stamp.sh"
out="${1:-${CARGO_TARGET_DIR:-$repo/target}/analyses}"
tools="${SPOTMILL_TOOLS_DIR:-$HOME/.cache/spotmill/tools}"
python="${PYTHON:-python3}"

componentize_py_version=0.25.1
venv="$tools/componentize-py-$componentize_py_version"
componentize_py="$venv/bin/componentize-py"

start=$SECONDS
# The stamp is written last: a half-finished install (interrupted, offline) is redone.
if [[ ! -f "$venv/.spotmill-complete" ]]; then
    echo "installing componentize-py $componentize_py_version into $venv" >&2
    rm -rf "$venv"
    mkdir -p "$tools"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        "componentize-py==$componentize_py_version"
    touch "$venv/.spotmill-complete"
    echo "toolchain ready in $((SECONDS - start)) s" >&2
fi

mkdir -p "$out"
name=os-distribution-python.wasm

# Skip the build when nothing it reads changed (this script, the toolchain versions, the
# WIT, the SDK and the example). The build is not reproducible (a new hash each time): a
# needless rebuild would also cost the runner a cold compile (20-50 s) and a new cached
# artifact (~40 MB). SPOTMILL_FORCE_BUILD=1 rebuilds anyway.
inputs="$(guest_inputs_hash "$componentize_py_version" "${BASH_SOURCE[0]}" "$repo/guest-sdk/python" -name '*.py')"
stamp="$out/.$name.inputs"
if guest_up_to_date "$out" "$name" "$inputs"; then
    exit 0
fi
echo "building $name" >&2
build_start=$SECONDS
# componentize-py's interpreter (CPython 3.14 inside) writes __pycache__ next to the
# modules it imports: build from a copy, never from the sources.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$repo"/guest-sdk/python/*.py "$work/"
# The app module is os_distribution (it defines Mapper and Reducer); -p: the module search
# path baked into the component (the SDK and the example sit side by side).
"$componentize_py" -d "$repo/wit" -w analysis componentize os_distribution \
    -p "$work" -o "$out/.$name.tmp"

head="$(od -An -tx1 -N8 "$out/.$name.tmp" | tr -d ' \n')"
if [[ "$head" != "0061736d0d000100" ]]; then
    echo "error: componentize-py did not write a component (first bytes: $head)" >&2
    exit 1
fi
mv -f "$out/.$name.tmp" "$out/$name"
echo "$inputs" >"$stamp"
printf '  %8d  %s  (%d s)\n' "$(stat -c %s "$out/$name")" "$out/$name" "$((SECONDS - build_start))" >&2
