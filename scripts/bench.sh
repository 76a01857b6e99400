#!/usr/bin/env bash
# Throughput benchmark: `spotmill run` against `xz -dc` on the same generated corpus.
#
# Builds the release binary and the analyses, generates (once, cached) a corpus of
# >= 200 MB uncompressed, then measures in one run, on the same files:
#   - `xz -dc` over every file, one process (one core);
#   - `xz -dc` over every file, `xargs -P $(nproc)` processes (all cores);
#   - `spotmill run --jobs 1` and `--jobs $(nproc)` for os-distribution.wasm, dashboard.wasm and for
#     every analysis in BENCH_ANALYSES.
# Each measurement is repeated BENCH_REPEAT times and the best (lowest wall time) is
# kept. Every spotmill analysis gets one untimed warm-up run first, so component
# compilation (the artifact cache) is not measured; its time is reported apart.
# Prints a table (MB/s of UNCOMPRESSED bytes, ratio to `xz -dc` at the same core
# count) and writes the same as JSON to <bench dir>/results.json.
#
# Usage: scripts/bench.sh            (works from any directory)
# Env:
#   CARGO_TARGET_DIR          host cargo target dir (default: <repo>/target)
#   SPOTMILL_WASM_TARGET_DIR  guest cargo target dir (see scripts/build-analyses.sh)
#   SPOTMILL_BENCH_DIR        corpus cache and results (default: <target>/bench)
#   BENCH_SUBMISSIONS         corpus size in submissions (default 5000, ~250 MB)
#   BENCH_SEED                generator seed (default 1)
#   BENCH_REPEAT              repetitions per measurement, best kept (default 3)
#   BENCH_ANALYSES            extra analyses: space-separated .wasm paths
#   BENCH_JOBS                the all-cores count (default: nproc)
#   BENCH_SKIP_BUILD=1        use the binary and analyses already built
#   BENCH_RUN_ARGS            extra flags for every `spotmill run` (e.g. --batch-records 256)
# Needs only bash, coreutils, findutils, xz-utils and python3.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}"
export CARGO_TARGET_DIR="$target"
bench_dir="${SPOTMILL_BENCH_DIR:-$target/bench}"
submissions="${BENCH_SUBMISSIONS:-5000}"
seed="${BENCH_SEED:-1}"
repeat="${BENCH_REPEAT:-3}"
cores="${BENCH_JOBS:-$(nproc)}"
read -r -a run_args <<<"${BENCH_RUN_ARGS:-}"
read -r -a extra_analyses <<<"${BENCH_ANALYSES:-}"

spotmill="$target/release/spotmill"
analyses_dir="$target/analyses"
min_uncompressed=$((200 * 1000 * 1000))

log() { printf '%s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

for n in "$submissions" "$seed" "$repeat" "$cores"; do
    [[ "$n" =~ ^[0-9]+$ ]] || die "BENCH_SUBMISSIONS, BENCH_SEED, BENCH_REPEAT and BENCH_JOBS must be integers (got '$n')"
done
((repeat >= 1)) || die "BENCH_REPEAT must be at least 1"
((cores >= 1)) || die "BENCH_JOBS must be at least 1"
command -v xz >/dev/null || die "xz is not installed (apt-get install xz-utils)"
command -v python3 >/dev/null || die "python3 is not installed"

# ---- build ------------------------------------------------------------------------
if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
    log "building the release binary (CARGO_TARGET_DIR=$target)"
    cargo build --release -p spotmill --manifest-path "$repo/Cargo.toml"
    log "building the analyses into $analyses_dir"
    "$repo/scripts/build-analyses.sh" "$analyses_dir"
fi
[[ -x "$spotmill" ]] || die "$spotmill is missing (unset BENCH_SKIP_BUILD to build it)"
analyses=("$analyses_dir/os-distribution.wasm" "$analyses_dir/dashboard.wasm")
for a in "${extra_analyses[@]}"; do
    analyses+=("$(cd "$(dirname "$a")" && pwd)/$(basename "$a")")
done
for a in "${analyses[@]}"; do
    [[ -f "$a" ]] || die "analysis $a is missing"
done

# ---- corpus (generated once; complete.json is written last) -----------------------
corpus="$bench_dir/corpus-$submissions-$seed"
logs="$corpus/logs"
marker="$corpus/complete.json"
files_list="$corpus/files.list" # NUL-separated, largest compressed file first
if [[ ! -f "$marker" ]]; then
    log "generating the corpus $corpus ($submissions submissions, seed $seed)"
    rm -rf "$corpus"
    mkdir -p "$corpus"
    gen_start="$(date +%s.%N)"
    "$spotmill" gen --out "$logs" --submissions "$submissions" --seed "$seed" --json >"$corpus/gen.json"
    gen_end="$(date +%s.%N)"
    find "$logs" -type f -printf '%s\t%p\0' | sort -z -t$'\t' -k1,1nr | cut -z -f2- >"$files_list"
    log "counting the uncompressed bytes with xz -dc"
    xz_bytes="$(xargs -0 xz -T1 -dc <"$files_list" | wc -c)"
    python3 - "$corpus/gen.json" "$xz_bytes" "$gen_start" "$gen_end" "$files_list" >"$marker.tmp" <<'EOF'
import json, sys
gen = json.load(open(sys.argv[1]))
files = [f for f in open(sys.argv[5], "rb").read().split(b"\0") if f]
gen["xz_uncompressed_bytes"] = int(sys.argv[2])
gen["listed_files"] = len(files)
gen["gen_seconds"] = round(float(sys.argv[4]) - float(sys.argv[3]), 3)
print(json.dumps(gen, indent=2))
EOF
    mv -f "$marker.tmp" "$marker"
fi
read -r nfiles compressed uncompressed gen_uncompressed < <(python3 - "$marker" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
print(m["listed_files"], m["compressed_bytes"], m["xz_uncompressed_bytes"], m["uncompressed_bytes"])
EOF
)
if ((uncompressed != gen_uncompressed)); then
    log "warning: xz -dc gives $uncompressed bytes, the generator reported $gen_uncompressed"
fi
if ((uncompressed < min_uncompressed)); then
    log "warning: the corpus is only $((uncompressed / 1000000)) MB uncompressed (< 200 MB); raise BENCH_SUBMISSIONS"
fi
log "corpus: $nfiles files, $((compressed / 1000000)) MB compressed, $((uncompressed / 1000000)) MB uncompressed"

# ---- measuring ----------------------------------------------------------------------
work="$bench_dir/work"
rm -rf "$work"
mkdir -p "$work"
rows="$work/rows.jsonl" # one JSON object per measurement, turned into the table at the end
: >"$rows"

# timed OUT ERR cmd...: runs cmd once (stdout to OUT, stderr to ERR); sets timed_wall,
# timed_user, timed_sys (seconds). Exits the script if cmd fails.
timed() {
    local out="$1" err="$2" times="$work/times" TIMEFORMAT='%3R %3U %3S'
    shift 2
    if ! { time "$@" >"$out" 2>"$err"; } 2>"$times"; then
        log "error: command failed: $*"
        sed 's/^/  /' "$err" >&2
        exit 1
    fi
    read -r timed_wall timed_user timed_sys <"$times"
}

# measure NAME CORES KIND ANALYSIS -- cmd...: BENCH_REPEAT timed runs, keeps the best
# (lowest wall time); appends a row to $rows. KIND is xz (stdout discarded) or spotmill
# (stdout is the JSON summary, checked and kept for the best run).
measure() {
    local name="$1" ncores="$2" kind="$3" analysis="$4"
    shift 5
    local best_wall="" best_user="" best_sys="" walls=() i
    local out=/dev/null err="$work/err"
    [[ "$kind" == spotmill ]] && out="$work/out"
    for ((i = 1; i <= repeat; i++)); do
        timed "$out" "$err" "$@"
        walls+=("$timed_wall")
        if [[ -z "$best_wall" ]] || python3 -c "import sys; sys.exit(float(sys.argv[1]) >= float(sys.argv[2]))" "$timed_wall" "$best_wall"; then
            best_wall="$timed_wall" best_user="$timed_user" best_sys="$timed_sys"
            if [[ "$kind" == spotmill ]]; then cp "$out" "$work/best.json"; fi
        fi
    done
    log "  $name, $ncores core(s): ${walls[*]} s (best $best_wall)"
    python3 - "$kind" "$name" "$ncores" "$best_wall" "$best_user" "$best_sys" "$analysis" "$work/best.json" "$uncompressed" "${walls[@]}" >>"$rows" <<'EOF'
import json, sys
kind, name, cores, wall, user, sys_, analysis, best, uncompressed = sys.argv[1:10]
row = {"what": name, "kind": kind, "cores": int(cores), "seconds": float(wall),
       "cpu_seconds": round(float(user) + float(sys_), 3),
       "all_seconds": [float(w) for w in sys.argv[10:]]}
if kind == "spotmill":
    s = json.load(open(best))
    if s.get("status") != "ok":
        sys.exit(f"error: {name} ended with status {s.get('status')}: {json.dumps(s)[:2000]}")
    if s["bytes_uncompressed"] != int(uncompressed):
        print(f"warning: {name} read {s['bytes_uncompressed']} uncompressed bytes, xz -dc {uncompressed}", file=sys.stderr)
    row.update(analysis=analysis, records=s["records"], tasks=s["tasks"],
               input_files=s["input_files"], fuel_used=s["fuel_used"],
               internal_wall_seconds=s["wall_seconds"],
               bytes_uncompressed=s["bytes_uncompressed"])
print(json.dumps(row))
EOF
}

core_counts=(1)
((cores > 1)) && core_counts+=("$cores")

# These machines are shared: a busy host makes every number (the all-cores ones most)
# meaningless, so say so, and keep the load averages with the results.
load_before="$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)"
if [[ "$load_before" != unknown ]] && python3 -c "import sys; sys.exit(float(sys.argv[1]) < 0.5)" "${load_before%% *}"; then
    log "warning: load average $load_before before measuring; other processes will skew the numbers"
fi

log "warming the page cache"
xargs -0 cat <"$files_list" >/dev/null

log "measuring (best of $repeat)"
# xz_dc PROCESSES: `xz -dc` over every file of the corpus. One process gets them all
# (xargs only splits at the argument-length limit); several get a few files each,
# largest first, so the tail is short.
xz_dc() {
    local procs="$1"
    if ((procs == 1)); then
        xargs -0 xz -T1 -dc <"$files_list"
    else
        xargs -0 -P "$procs" -n "$(((nfiles + procs * 16 - 1) / (procs * 16)))" xz -T1 -dc <"$files_list"
    fi
}
for c in "${core_counts[@]}"; do
    measure "xz -dc" "$c" xz "" -- xz_dc "$c"
done

warmups="$work/warmups.jsonl"
: >"$warmups"
for a in "${analyses[@]}"; do
    name="$(basename "$a")"
    log "warm-up run of $name (compiles the component into the artifact cache if needed)"
    timed "$work/out" "$work/err" "$spotmill" run --analysis "$a" --input "$logs" \
        --output "$work/output-$name" --jobs "$cores" --json --quiet --fresh "${run_args[@]}"
    printf '{"analysis": "%s", "seconds": %s}\n' "$name" "$timed_wall" >>"$warmups"
    for c in "${core_counts[@]}"; do
        measure "$name" "$c" spotmill "$a" -- "$spotmill" run --analysis "$a" --input "$logs" \
            --output "$work/output-$name" --jobs "$c" --json --quiet --fresh "${run_args[@]}"
    done
done

# ---- report -------------------------------------------------------------------------
load_after="$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)"
python3 - "$rows" "$warmups" "$bench_dir/results.json" "$corpus" "$marker" "$repeat" "${run_args[*]}" "$repo" \
    "$load_before" "$load_after" <<'EOF'
import json, os, platform, subprocess, sys, time
rows_file, warmups_file, out, corpus, marker, repeat, run_args, repo, load_before, load_after = sys.argv[1:11]
rows = [json.loads(l) for l in open(rows_file) if l.strip()]
warmups = [json.loads(l) for l in open(warmups_file) if l.strip()]
meta = json.load(open(marker))
uncompressed = meta["xz_uncompressed_bytes"]
xz = {r["cores"]: r for r in rows if r["kind"] == "xz"}
for r in rows:
    r["mb_per_s_uncompressed"] = round(uncompressed / 1e6 / r["seconds"], 2)
    base = xz.get(r["cores"])
    r["ratio_to_xz"] = round(base["seconds"] / r["seconds"], 3) if base else None

def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()

def git(*args):
    try:
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()
    except Exception:
        return None

result = {
    "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    "host": {"cpu": cpu_model(), "nproc": len(os.sched_getaffinity(0)),
             "loadavg_before": load_before, "loadavg_after": load_after},
    "git_commit": git("rev-parse", "HEAD"),
    "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
    "corpus": {"path": corpus, "files": meta["listed_files"], "submissions": meta["submissions"],
               "bytes_compressed": meta["compressed_bytes"], "bytes_uncompressed": uncompressed},
    "repeat": int(repeat), "run_args": run_args,
    "warmup_runs": warmups,
    "rows": rows,
}
with open(out + ".tmp", "w") as f:
    json.dump(result, f, indent=2)
    f.write("\n")
os.replace(out + ".tmp", out)

print(f"corpus: {meta['listed_files']} files, {meta['compressed_bytes']/1e6:.1f} MB compressed, "
      f"{uncompressed/1e6:.1f} MB uncompressed; best of {repeat}"
      + (f"; run args: {run_args}" if run_args else ""))
head = f"{'what':<28} {'cores':>5} {'seconds':>8} {'MB/s unc.':>10} {'vs xz -dc':>9} {'cpu s':>7}"
print(head)
print("-" * len(head))
for r in rows:
    ratio = f"{r['ratio_to_xz']:.2f}x" if r["ratio_to_xz"] is not None else "-"
    print(f"{r['what']:<28} {r['cores']:>5} {r['seconds']:>8.2f} {r['mb_per_s_uncompressed']:>10.1f} {ratio:>9} {r['cpu_seconds']:>7.2f}")
for w in warmups:
    print(f"warm-up (untimed above, includes compiling if the cache was cold): {w['analysis']} {w['seconds']:.2f} s")
print(f"load average (1, 5, 15 min): {load_before} before, {load_after} after")
print(f"results: {out}")
EOF
