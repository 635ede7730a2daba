#!/usr/bin/env bash
# Runs every Phoenix benchmark in one go and regenerates the table at the top of
# docs/benchmarks.md (between the bench:begin/bench:end markers; the notes below it are
# kept). Each figure stands beside a baseline measured in the same run.
#
#   scripts/bench.sh [small|full]        (default: full)
#
# full:  release build; the sizes of docs/benchmarks.md (100k groups, 300k instances,
#        10k- and 100k-file repositories, 1,000 moto instances, ...). Takes a while.
# small: what CI runs (scripts/test.sh) so every benchmark keeps compiling and running:
#        scaled-down inputs, and the debug build that `cargo test` has already made, so
#        nothing heavy (the AWS SDK) is compiled again. Goals are not judged at this size.
#
# Environment: CARGO_TARGET_DIR (default ~/.cache/phoenix/target), PHOENIX_SOAK_MINUTES
# (the soak: default 20 in full, 0.5 in small), PHOENIX_VENV (moto +
# boto3; scripts/setup.sh makes it), BENCH_ONLY="spec_hash reconcile ..." (run only these
# pieces; the others keep no row), BENCH_DOC (default docs/benchmarks.md),
# BENCH_LOGS (default: a fresh temp dir, kept and printed at the end),
# BENCH_RECONCILE_GROUPS (override the reconcile sizes, e.g. 1000,10000).
#
# Exit status: non-zero when a benchmark failed (crashed, timed out in its harness, or
# printed nothing parsable). Speed is never asserted here; the table says met/not met.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

SIZE=${1:-full}
case "$SIZE" in
full | small) ;;
*)
    echo "usage: $0 [small|full]" >&2
    exit 64
    ;;
esac

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/phoenix/target}"
export PHOENIX_VENV="${PHOENIX_VENV:-$HOME/.cache/phoenix/venv}"
export AWS_EC2_METADATA_DISABLED=true
DOC=${BENCH_DOC:-docs/benchmarks.md}
LOGS=${BENCH_LOGS:-$(mktemp -d /tmp/phoenix-bench.XXXXXX)}
mkdir -p "$LOGS"
START=$SECONDS
log() { echo "[bench] $(date -u +%T) $*" >&2; }

if [ "$SIZE" = full ]; then
    BUILD=release
    BIN_DIR=$CARGO_TARGET_DIR/release
    SOURCE_SMALL=10000
    RECONCILE_GROUPS=${BENCH_RECONCILE_GROUPS:-1000,10000,100000}
    RECONCILE_TIMEOUT=300
    unset PHOENIX_BENCH_SIZE # scripts/test.sh exports it; full means full
else
    BUILD=debug
    BIN_DIR=$CARGO_TARGET_DIR/debug
    SOURCE_SMALL=2000
    RECONCILE_GROUPS=${BENCH_RECONCILE_GROUPS:-100,1000}
    RECONCILE_TIMEOUT=300
    export PHOENIX_BENCH_SIZE=small
fi

want() { [ -z "${BENCH_ONLY:-}" ] || [[ " $BENCH_ONLY " == *" $1 "* ]]; }

FAILED=()
# run PIECE CMD...: stdout+stderr to $LOGS/PIECE.log, exit code to $LOGS/PIECE.rc
run() {
    local piece=$1
    shift
    want "$piece" || return 0
    log "$piece: $*"
    local t0=$SECONDS
    "$@" >"$LOGS/$piece.log" 2>&1
    local rc=$?
    echo "$rc" >"$LOGS/$piece.rc"
    if [ "$rc" != 0 ]; then
        FAILED+=("$piece")
        log "$piece FAILED (exit $rc); last lines of $LOGS/$piece.log:"
        tail -15 "$LOGS/$piece.log" >&2
    else
        log "$piece done in $((SECONDS - t0)) s"
    fi
}

machine_json() {
    python3 - "$@" <<'PY'
import json, os, subprocess, sys, datetime
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown CPU")
mem_kb = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal"))
commit = os.environ["BENCH_COMMIT"]
print(json.dumps({
    "cores": os.cpu_count(), "cpu": cpu, "ram": f"{mem_kb / 1048576:.0f} GiB",
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    "commit": commit,
    "build": sys.argv[1], "load_before": sys.argv[2], "load_after": sys.argv[3], "elapsed_s": int(sys.argv[4]),
}))
PY
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
# The code measured is the code at the start (the binaries are built from it), whatever
# is committed while the run goes on.
BENCH_COMMIT=$(git rev-parse --short=12 HEAD)
[ -z "$(git status --porcelain --untracked-files=no)" ] || BENCH_COMMIT="$BENCH_COMMIT+uncommitted changes"
export BENCH_COMMIT
log "size $SIZE, $BUILD build, target dir $CARGO_TARGET_DIR, logs in $LOGS, load average $LOAD_BEFORE"

# What the benchmarks need: moto + boto3 (inventory), git (sources); bench_api.sh
# installs wrk and nginx itself.
if want inventory; then scripts/setup.sh >"$LOGS/setup.log" 2>&1 || { log "setup failed"; cat "$LOGS/setup.log" >&2; }; fi

# The binaries the whole-daemon benchmarks start.
if want reconcile || want api || want soak; then
    log "building phoenix and phoenix-bench ($BUILD)"
    if [ "$BUILD" = release ]; then
        cargo build -q --release -p phoenix -p phoenix-bench || { log "build failed"; exit 1; }
    elif [ ! -x "$BIN_DIR/phoenix" ] || [ ! -x "$BIN_DIR/phoenix-bench" ]; then
        # the test build makes both (their packages have integration tests)
        cargo test -q --workspace --all-targets --no-run || { log "build failed"; exit 1; }
    fi
fi

# The bench executables, built once and run directly (cwd = their package), so cargo
# never re-resolves features per package (which would rebuild the AWS SDK). small: the
# test build of the whole workspace, exactly what `cargo test --workspace --all-targets`
# (CI) has already compiled; full: the bench profile. With BENCH_ONLY (full), only the
# packages needed.
PKGS=()
want spec_hash || want plan || want windows && PKGS+=(-p phoenix-core)
want source_small || want source_full && PKGS+=(-p phoenix-source)
want inventory && PKGS+=(-p phoenix-cloud)
want step_write && PKGS+=(-p phoenix-store)
want executor || want traffic && PKGS+=(-p phoenix-daemon)
declare -A EXE=()
if [ ${#PKGS[@]} -gt 0 ]; then
    if [ "$SIZE" = small ] || [ -z "${BENCH_ONLY:-}" ]; then PKGS=(--workspace); fi
    if [ "$SIZE" = small ]; then
        BUILD_CMD=(cargo test -q "${PKGS[@]}" --all-targets --no-run --message-format=json)
    else
        BUILD_CMD=(cargo bench -q "${PKGS[@]}" --no-run --message-format=json)
    fi
    log "building the bench executables: ${BUILD_CMD[*]}"
    "${BUILD_CMD[@]}" >"$LOGS/build.json" 2>"$LOGS/build.log" || { log "build failed"; tail -30 "$LOGS/build.log" >&2; exit 1; }
    while read -r name exe dir; do EXE[$name]="$exe $dir"; done < <(python3 - "$LOGS/build.json" <<'PY'
import json, os, sys
for line in open(sys.argv[1]):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and "bench" in m["target"]["kind"] and m.get("executable"):
        print(m["target"]["name"], m["executable"], os.path.dirname(m["manifest_path"]))
PY
)
fi

# bench NAME: run the bench executable NAME in its package folder (`--bench` in full,
# as `cargo bench` passes it; nothing in small, as `cargo test` runs it).
bench() {
    local exe dir
    read -r exe dir <<<"${EXE[$1]:-}"
    [ -n "${exe:-}" ] || { echo "no bench executable named $1" >&2; return 1; }
    if [ "$SIZE" = full ]; then (cd "$dir" && "$exe" --bench); else (cd "$dir" && "$exe"); fi
}

run spec_hash bench spec_hash
PHOENIX_BENCH_SIZE=$SOURCE_SMALL run source_small bench source_load
if [ "$SIZE" = full ]; then
    PHOENIX_BENCH_SIZE=100000 run source_full bench source_load
fi
run inventory bench inventory
run plan bench plan
run windows bench windows
run reconcile "$BIN_DIR/phoenix-bench" reconcile --phoenix "$BIN_DIR/phoenix" \
    --groups "$RECONCILE_GROUPS" --steady-passes 3 --timeout-secs "$RECONCILE_TIMEOUT"
run api env PHOENIX_BIN="$BIN_DIR/phoenix" scripts/bench_api.sh "$SIZE"
run step_write bench step_write
run executor bench executor
run traffic bench traffic
# The soak (issue 17): full runs it for 20 minutes (PHOENIX_SOAK_MINUTES overrides), small
# for half a minute so it keeps working.
if [ "$SIZE" = full ]; then SOAK_MINUTES=${PHOENIX_SOAK_MINUTES:-20}; else SOAK_MINUTES=${PHOENIX_SOAK_MINUTES:-0.5}; fi
run soak "$BIN_DIR/phoenix-bench" soak --phoenix "$BIN_DIR/phoenix" --minutes "$SOAK_MINUTES"

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
machine_json "$BUILD" "$LOAD_BEFORE" "$LOAD_AFTER" "$((SECONDS - START))" >"$LOGS/machine.json"
python3 scripts/bench/report.py "$LOGS" "$SIZE" "$DOC" || { log "report failed"; exit 1; }
log "wrote $DOC; logs kept in $LOGS"
if [ ${#FAILED[@]} -gt 0 ]; then
    log "failed: ${FAILED[*]}"
    exit 1
fi
