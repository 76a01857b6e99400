# Sourced by scripts/build-guests-*.sh: skips a guest build whose inputs did not change.
# Interpreter guests are not byte-reproducible, so a needless rebuild would also cost the
# runner a cold compile and a new cached artifact. SPOTMILL_FORCE_BUILD=1 rebuilds anyway.

# guest_inputs_hash VERSIONS SCRIPT SDK_DIR FIND_TESTS...: one hash over the toolchain
# versions, the build script, the WIT and the SDK files FIND_TESTS selects.
guest_inputs_hash() {
    local versions="$1" script="$2" sdk="$3"
    shift 3
    {
        echo "$versions"
        cat "$script"
        { find "$repo/wit" -type f -print0; find "$sdk" -type f \( "$@" \) -print0; } |
            sort -z | xargs -0 cat
    } | sha256sum | cut -d' ' -f1
}

# guest_up_to_date OUT NAME INPUTS: true (and says so) when OUT/NAME was built from INPUTS.
guest_up_to_date() {
    local stamp="$1/.$2.inputs"
    if [[ "${SPOTMILL_FORCE_BUILD:-}" != 1 && -f "$1/$2" && -f "$stamp" && "$(cat "$stamp")" == "$3" ]]; then
        echo "$1/$2 is up to date" >&2
        return 0
    fi
    return 1
}
