#!/usr/bin/env bash
# HTTP API throughput and push-to-plan latency of `phoenix run` (issue 7 item 9).
#
#   scripts/bench_api.sh [small|full]        (default: full)
#
# full: 10,000 groups, wrk -t2 -c32 -d10s, 20 pushes; small: 1,000 groups, -d3s, 5 pushes.
# Environment: PHOENIX_BIN (skip the build and use this binary), CARGO_TARGET_DIR
# (default ~/.cache/phoenix/target), BENCH_KEEP=1 (keep the temp dir), BENCH_SKIP_WRK=1
# (push-to-plan only), BENCH_PERF=FILE (record `perf record --call-graph dwarf` of the daemon during the
# push rounds into FILE, for profiling).
#
# What it does, all on 127.0.0.1 with free ports and a temp dir, everything stopped by
# PID on exit:
#   1. generates N groups for the `sim` provider (replicas $BENCH_REPLICAS, default 0;
#      launch_latency 0s) in a git
#      repository served by `git daemon`, and starts `phoenix run` in enforce mode on it
#      (poll interval 1h: only the webhook makes it fetch); waits for /readyz and for the
#      whole fleet to be in sync;
#   2. wrk against GET /api/v1/status and GET /api/v1/groups, then the same wrk command
#      against nginx (Debian) serving static files of the same sizes: the baseline;
#   3. push-to-plan: commit + push a new image for one group, send a signed GitHub push
#      webhook, poll GET /api/v1/groups/<name> every 5 ms until the new desired hash has
#      a plan acting on it (scripts/bench/push_to_plan.py);
#   4. prints a markdown table and `RESULT {json}` lines for scripts/bench.sh.
set -euo pipefail

SIZE=${1:-full}
case "$SIZE" in
full) GROUPS_N=10000 WRK_D=10s ROUNDS=20 CONVERGE_S=900 ;;
small) GROUPS_N=1000 WRK_D=3s ROUNDS=5 CONVERGE_S=300 ;;
*)
    echo "usage: $0 [small|full]" >&2
    exit 64
    ;;
esac
GROUPS_N=${BENCH_GROUPS:-$GROUPS_N}
# Replicas per group at start. 0 (default): nothing is launched at start, so the daemon is
# ready at once, and each push sets one group to 1 replica and a new image, which makes
# the planner open a launch plan. 1: the whole fleet (one sim instance per group) is
# launched and must converge first; each push then plans a rolling replacement. (At
# 10,000 groups the first enforce pass with 10,000 launch plans takes minutes: see
# docs/benchmarks.md.)
REPLICAS=${BENCH_REPLICAS:-0}
WRK_ARGS=(-t2 -c32 "-d$WRK_D" --timeout 5s)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECRET=bench-webhook-secret
log() { echo "[bench_api] $(date +%T) $*" >&2; }

# --- tools -----------------------------------------------------------------------------
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    apt-get install -y --no-install-recommends "${need[@]}" >/dev/null ||
        { apt-get update >/dev/null && apt-get install -y --no-install-recommends "${need[@]}" >/dev/null; }
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
for t in git curl python3; do command -v $t >/dev/null || { echo "missing $t" >&2; exit 1; }; done

# --- binary ----------------------------------------------------------------------------
if [ -n "${PHOENIX_BIN:-}" ]; then
    BIN=$PHOENIX_BIN
    BUILD=$(basename "$(dirname "$BIN")")
else
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/phoenix/target}
    log "cargo build --release -p phoenix (target dir $CARGO_TARGET_DIR)"
    (cd "$ROOT" && cargo build --release -p phoenix -q)
    BIN=$CARGO_TARGET_DIR/release/phoenix
    BUILD=release
fi
[ -x "$BIN" ] || { echo "no phoenix binary at $BIN" >&2; exit 1; }

# --- temp dir, cleanup -----------------------------------------------------------------
TMP=$(mktemp -d /tmp/phoenix-bench-api.XXXXXX)
chmod 755 "$TMP" # nginx workers run as www-data
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
    if [ "${BENCH_KEEP:-0}" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
# wait_http URL SECONDS: until the URL answers 200
wait_http() {
    local end=$((SECONDS + $2))
    while [ $SECONDS -lt $end ]; do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$1" || true)" = 200 ] && return 0
        sleep 0.2
    done
    return 1
}

MACHINE="$(nproc) cores, $(free -g | awk '/^Mem:/{print $2}') GiB RAM"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log "machine: $MACHINE, load average $LOAD_BEFORE, binary $BIN ($BUILD)"

# --- desired state in git --------------------------------------------------------------
mkdir -p "$TMP/host" "$TMP/work/groups" "$TMP/daemon"
git init -q --bare -b main "$TMP/host/infra.git"
git -C "$TMP/work" init -q -b main
git -C "$TMP/work" config user.email bench@example.invalid
git -C "$TMP/work" config user.name bench
python3 - "$TMP/work/groups" "$GROUPS_N" "$REPLICAS" <<'EOF'
import sys
d, n, replicas = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(n):
    with open(f"{d}/g-{i:05d}.yaml", "w") as f:
        f.write(f"""apiVersion: phoenix/v1
kind: InstanceGroup
metadata:
  name: g-{i:05d}
spec:
  provider: sim
  replicas: {replicas}
  template:
    image: ami-{i:017x}
    instanceType: t3.micro
  rollout: {{maxSurge: 1, maxUnavailable: 0}}
  health: {{check: provider, grace: 0s, deadline: 2m}}
""")
EOF
git -C "$TMP/work" add -A
git -C "$TMP/work" commit -qm "bench: $GROUPS_N groups"
git -C "$TMP/work" remote add origin "$TMP/host/infra.git"
git -C "$TMP/work" push -q origin HEAD:main

GIT_PORT=$(free_port)
git daemon --listen=127.0.0.1 --port="$GIT_PORT" --base-path="$TMP/host" --export-all \
    --reuseaddr "$TMP/host" >"$TMP/git-daemon.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do git ls-remote "git://127.0.0.1:$GIT_PORT/infra.git" >/dev/null 2>&1 && break; sleep 0.1; done

# --- phoenix run -----------------------------------------------------------------------
API_PORT=$(free_port)
API=http://127.0.0.1:$API_PORT
cat >"$TMP/daemon/phoenix.yaml" <<EOF
owner: bench
source:
  git: {url: "git://127.0.0.1:$GIT_PORT/infra.git", branch: main, path: groups, interval: 1h}
providers:
  - {name: sim, type: sim, launch_latency: 0s}
reconcile: {interval: 30s, mode: enforce}
state: {path: state}
server: {listen: "127.0.0.1:$API_PORT"}
webhooks: {git: {secret_env: PHX_BENCH_HOOK}}
EOF
log "starting phoenix run with $GROUPS_N groups on $API"
T0=$SECONDS
PHX_BENCH_HOOK=$SECRET RUST_LOG=${RUST_LOG:-warn} "$BIN" run --config "$TMP/daemon/phoenix.yaml" \
    >"$TMP/daemon/stdout.log" 2>"$TMP/daemon/daemon.log" &
PHX_PID=$!
PIDS+=($PHX_PID)
if ! wait_http "$API/readyz" 600; then
    log "daemon not ready within 600 s"; tail -20 "$TMP/daemon/daemon.log" >&2; exit 1
fi
READY_S=$((SECONDS - T0))
log "ready after ${READY_S}s; waiting for all $GROUPS_N groups to be in sync (at most ${CONVERGE_S}s)"
end=$((SECONDS + CONVERGE_S))
in_sync=0
while [ $SECONDS -lt $end ]; do
    kill -0 $PHX_PID 2>/dev/null || { log "daemon died"; tail -20 "$TMP/daemon/daemon.log" >&2; exit 1; }
    [ "$REPLICAS" = 0 ] && { in_sync=$GROUPS_N; break; }
    in_sync=$(curl -s "$API/api/v1/status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["groups"]["in_sync"])' 2>/dev/null || echo 0)
    [ "$in_sync" -ge "$GROUPS_N" ] && break
    sleep 2
done
CONVERGED_S=$((SECONDS - T0))
log "$in_sync of $GROUPS_N groups in sync after ${CONVERGED_S}s"
sleep 2 # let the last pass settle

curl -s -o "$TMP/status.json" "$API/api/v1/status"
curl -s -o "$TMP/groups.json" "$API/api/v1/groups"
STATUS_BYTES=$(stat -c %s "$TMP/status.json")
GROUPS_BYTES=$(stat -c %s "$TMP/groups.json")
log "status body $STATUS_BYTES bytes, groups body $GROUPS_BYTES bytes"

# run_wrk URL NAME: prints req/s; keeps the full output in $TMP/wrk-NAME.txt
run_wrk() {
    timeout 120 wrk "${WRK_ARGS[@]}" --latency "$1" >"$TMP/wrk-$2.txt" 2>&1 || true
    if grep -q 'Non-2xx' "$TMP/wrk-$2.txt"; then log "wrk $2: non-2xx answers"; grep 'Non-2xx' "$TMP/wrk-$2.txt" >&2; fi
    awk '/^Requests\/sec:/{print $2}' "$TMP/wrk-$2.txt"
}
p50() { awk '$1=="50%"{print $2}' "$TMP/wrk-$1.txt" 2>/dev/null || true; }
p99() { awk '$1=="99%"{print $2}' "$TMP/wrk-$1.txt" 2>/dev/null || true; }

LOAD_RUN=$(cut -d' ' -f1-3 /proc/loadavg)
if [ "${BENCH_SKIP_WRK:-0}" = 1 ]; then
    PHX_STATUS= PHX_GROUPS= NGX_STATUS= NGX_GROUPS=
else
log "wrk ${WRK_ARGS[*]} $API/api/v1/status"
PHX_STATUS=$(run_wrk "$API/api/v1/status" status)
log "wrk ${WRK_ARGS[*]} $API/api/v1/groups"
PHX_GROUPS=$(run_wrk "$API/api/v1/groups" groups)

# --- nginx baseline --------------------------------------------------------------------
NGX_PORT=$(free_port)
mkdir -p "$TMP/nginx/www" "$TMP/nginx/tmp"
head -c "$STATUS_BYTES" /dev/zero | tr '\0' 'x' >"$TMP/nginx/www/status.json"
head -c "$GROUPS_BYTES" /dev/zero | tr '\0' 'x' >"$TMP/nginx/www/groups.json"
chmod -R a+rX "$TMP/nginx"
cat >"$TMP/nginx/nginx.conf" <<EOF
daemon off;
worker_processes auto;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    default_type application/json;
    client_body_temp_path $TMP/nginx/tmp/body;
    proxy_temp_path $TMP/nginx/tmp/proxy;
    fastcgi_temp_path $TMP/nginx/tmp/fastcgi;
    uwsgi_temp_path $TMP/nginx/tmp/uwsgi;
    scgi_temp_path $TMP/nginx/tmp/scgi;
    server {
        listen 127.0.0.1:$NGX_PORT;
        root $TMP/nginx/www;
    }
}
EOF
"$NGINX" -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$TMP/nginx/nginx.conf" &
NGX_PID=$!
PIDS+=($NGX_PID)
wait_http "http://127.0.0.1:$NGX_PORT/status.json" 10 || { log "nginx did not start"; cat "$TMP/nginx/error.log" >&2; exit 1; }
log "wrk ${WRK_ARGS[*]} nginx static files"
NGX_STATUS=$(run_wrk "http://127.0.0.1:$NGX_PORT/status.json" nginx-status)
NGX_GROUPS=$(run_wrk "http://127.0.0.1:$NGX_PORT/groups.json" nginx-groups)
kill "$NGX_PID" 2>/dev/null || true
wait "$NGX_PID" 2>/dev/null || true
fi

# --- push-to-plan ----------------------------------------------------------------------
log "push-to-plan: $ROUNDS rounds"
if [ -n "${BENCH_PERF:-}" ]; then
    perf record --call-graph dwarf,32768 -F 499 -o "$BENCH_PERF" -p "$PHX_PID" >/dev/null 2>&1 &
    PERF_PID=$!
    sleep 0.5
fi
python3 "$ROOT/scripts/bench/push_to_plan.py" --port "$API_PORT" --work "$TMP/work" \
    --secret "$SECRET" --rounds "$ROUNDS" --groups "$GROUPS_N" --mode enforce \
    >"$TMP/push.json" 2>"$TMP/push.log" || { cat "$TMP/push.log" >&2; exit 1; }
cat "$TMP/push.log" >&2
if [ -n "${BENCH_PERF:-}" ]; then
    kill -INT "$PERF_PID" 2>/dev/null || true
    wait "$PERF_PID" 2>/dev/null || true
    log "perf data in $BENCH_PERF"
fi
RSS_KB=$(awk '/^VmHWM:/{print $2}' /proc/$PHX_PID/status 2>/dev/null || echo 0)
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# --- report ----------------------------------------------------------------------------
python3 - "$TMP" <<EOF
import json, sys
tmp = sys.argv[1]
push = json.load(open(f"{tmp}/push.json"))
f = lambda s: float(s) if s else 0.0
ps, pg, ns, ng = f("$PHX_STATUS"), f("$PHX_GROUPS"), f("$NGX_STATUS"), f("$NGX_GROUPS")
size, groups = "$SIZE", $GROUPS_N
ratio = lambda a, b: (a / b) if b else 0.0
status_met = ps >= 20000 and ps >= 0.5 * ns
med, p90 = push["plan_median_ms"], push["plan_p90_ms"]
push_met = med is not None and med < 100 and push["timeouts"] == 0
yn = lambda b: "yes" if b else "**no**"
print()
print(f"Replicas per group at start: $REPLICAS.")
print(f"Machine: $MACHINE; load average before {'$LOAD_BEFORE'}, at wrk {'$LOAD_RUN'}, after {'$LOAD_AFTER'}; "
      f"binary: $BUILD; {groups} groups ($in_sync in sync, fleet converged {$CONVERGED_S}s after start, ready after {$READY_S}s); "
      f"wrk ${WRK_ARGS[*]}; daemon peak RSS {int('$RSS_KB' or 0)//1024} MiB.")
print()
print("| measurement | Phoenix | baseline (same run) | ratio | goal | met |")
print("|---|---|---|---|---|---|")
wrk_ran = "${BENCH_SKIP_WRK:-0}" != "1"
if wrk_ran:
    print(f"| GET /api/v1/status, {groups} groups ($STATUS_BYTES B body) | {ps:,.0f} req/s (p50 $(p50 status), p99 $(p99 status)) "
          f"| nginx static file of the same size: {ns:,.0f} req/s (p50 $(p50 nginx-status)) | {ratio(ps, ns):.2f} of nginx "
          f"| >= 20,000 req/s and >= 0.5 of nginx | {yn(status_met)} |")
    print(f"| GET /api/v1/groups, {groups} groups ($GROUPS_BYTES B body) | {pg:,.0f} req/s (p50 $(p50 groups), p99 $(p99 groups)) "
          f"| nginx static file of the same size: {ng:,.0f} req/s (p50 $(p50 nginx-groups)) | {ratio(pg, ng):.2f} of nginx | | |")
print(f"| push-to-plan, webhook sent -> plan on the group in the API, {groups} groups ({push['ok']}/{push['rounds']} rounds) "
      f"| median {med} ms, p90 {p90} ms (min {push['plan_min_ms']}, max {push['plan_max_ms']}) | | | median < 100 ms | {yn(push_met)} |")
print(f"| webhook sent -> new desired hash in the API | median {push['hash_median_ms']} ms | | | | |")
print()
common = {"size": size, "groups": groups, "build": "$BUILD", "load": "$LOAD_RUN"}
if wrk_ran:
    print("RESULT " + json.dumps({"bench": "api_status", **common, "phoenix_rps": round(ps), "nginx_rps": round(ns),
          "ratio": round(ratio(ps, ns), 3), "body_bytes": $STATUS_BYTES, "goal_rps": 20000, "goal_ratio": 0.5, "met": status_met}))
    print("RESULT " + json.dumps({"bench": "api_groups", **common, "phoenix_rps": round(pg), "nginx_rps": round(ng),
          "ratio": round(ratio(pg, ng), 3), "body_bytes": $GROUPS_BYTES}))
print("RESULT " + json.dumps({"bench": "push_to_plan", **common, "median_ms": med, "p90_ms": p90,
      "hash_median_ms": push["hash_median_ms"], "rounds": push["rounds"], "ok": push["ok"],
      "goal_median_ms": 100, "met": push_met, "samples_ms": push["plan_ms"]}))
EOF
