#!/usr/bin/env bash
# Ferrobase vs PocketBase, side by side, in one run on this machine.
#
#   bench/run.sh                                  # builds the release binary first
#   FERROBASE_BIN=/path/to/ferrobase bench/run.sh # use an already-built binary
#   FERROBASE_REV=HEAD bench/run.sh               # build a commit, not the working tree
#   DURATION=5 CONNS=16 bench/run.sh              # shorter / lighter load
#
# What it does:
#   1. builds `ferrobase` in release (CARGO_TARGET_DIR is honoured), unless FERROBASE_BIN is set;
#   2. installs PocketBase 0.40.6 with the shared harness (SHARED_BENCH/pocketbase/setup.sh);
#   3. PocketBase: fresh data dir on a free loopback port (start.sh), seed + 5 scenarios
#      (bench.sh), stop (stop.sh);
#   4. Ferrobase: fresh data dir on a free loopback port, admin account, `posts` collection with
#      open rules (schema apply), then the very same bench.sh (same seed.py, same load tool, same
#      settings) pointed at the /v1 routes, stop;
#   5. prints ONE markdown table: req/s, p50, p99, peak RSS for both, and the ratios
#      (throughput: ours / PocketBase; latency and memory: PocketBase / ours, so > 1 is better).
#
# Scenarios (bench.sh): list 20 with total count, view by id, filter+sort (no index),
# login, create (last, so the reads all see SEED_POSTS rows). Peak RSS per scenario is VmHWM
# from /proc/PID/status, reset before each scenario. Both servers are seeded with SEED_POSTS
# posts by seed.py: sequential single creates over one keep-alive connection (no batch).
#
# Environment: FERROBASE_BIN, FERROBASE_REV, CARGO_TARGET_DIR, DURATION (10 s per scenario),
# CONNS (32), SEED_POSTS (10000),
# LOAD_TOOL (auto: oha if installed, else wrk), QUIET_MAX_WAIT (30 s: how long bench.sh waits
# for an idle machine before each scenario), SHARED_BENCH (/work/shared/bench),
# WORK (/tmp/ferrobase-bench/<timestamp>: data dirs, logs, raw load-tool output).
# Needs: curl, jq, python3, and oha or wrk (`apt-get install -y wrk`). Loopback only.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
export SHARED_BENCH="${SHARED_BENCH:-/work/shared/bench}"
PB_DIR="$SHARED_BENCH/pocketbase"
export DURATION="${DURATION:-10}" CONNS="${CONNS:-32}" SEED_POSTS="${SEED_POSTS:-10000}"
export LOAD_TOOL="${LOAD_TOOL:-auto}" QUIET_MAX_WAIT="${QUIET_MAX_WAIT:-30}"
WORK="${WORK:-/tmp/ferrobase-bench/$(date -u +%Y%m%dT%H%M%SZ)}"
FB_ADMIN_EMAIL="admin@example.com"
FB_ADMIN_PASS="bench-pass-123"

log() { echo "[run] $*" >&2; }
die() { log "$*"; exit 1; }

for t in curl jq python3; do command -v "$t" >/dev/null || die "missing $t"; done
command -v oha >/dev/null || command -v wrk >/dev/null ||
  die "no load tool: apt-get install -y wrk (or cargo install oha --locked)"
[[ -x "$PB_DIR/bench.sh" ]] || die "shared harness not found in $PB_DIR (set SHARED_BENCH)"

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

mkdir -p "$WORK"

# ---- 1. binaries ---------------------------------------------------------------------------
SRC="$REPO"
if [[ -z "${FERROBASE_BIN:-}" ]]; then
  if [[ -n "${FERROBASE_REV:-}" ]]; then
    # Build a committed revision from a clean export (ignores uncommitted edits in the tree).
    SRC="$WORK/src"
    rm -rf "$SRC" && mkdir -p "$SRC"
    git -C "$REPO" archive "$FERROBASE_REV" | tar -x -C "$SRC"
  fi
  log "building ferrobase (release) from $SRC ..."
  (cd "$SRC" && CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}" cargo build --release -p ferrobase >&2)
  FERROBASE_BIN="${CARGO_TARGET_DIR:-$REPO/target}/release/ferrobase"
fi
[[ -x "$FERROBASE_BIN" ]] || die "no ferrobase binary at $FERROBASE_BIN"
# ferrobase reads FERROBASE_* variables as settings and refuses unknown ones: keep ours private.
export -n FERROBASE_BIN FERROBASE_REV 2>/dev/null || true
PB_BIN="$("$PB_DIR/setup.sh")"
export PB_BIN

PB_PID="" FB_PID=""
cleanup() {
  [[ -n "$PB_PID" ]] && kill "$PB_PID" 2>/dev/null || true
  [[ -n "$FB_PID" ]] && kill "$FB_PID" 2>/dev/null || true
}
trap cleanup EXIT

{
  echo "date (UTC): $(date -u '+%Y-%m-%d %H:%M')"
  echo "machine: $(nproc) cores, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), kernel $(uname -r)"
  echo "pocketbase: $("$PB_BIN" --version)"
  echo "ferrobase: $("$FERROBASE_BIN" --version 2>/dev/null || echo '?') (repo at $(git -C "$REPO" rev-parse --short "${FERROBASE_REV:-HEAD}" 2>/dev/null || echo '?')${FERROBASE_REV:+, built from that commit})"
  if [[ "$LOAD_TOOL" == oha ]] || { [[ "$LOAD_TOOL" == auto ]] && command -v oha >/dev/null; }; then
    echo "load tool: $(oha --version)"
  else
    echo "load tool: $( (wrk --version 2>&1 || true) | awk 'NR == 1 {print $1, $2}')"
  fi
  echo "settings: ${DURATION}s per scenario, $CONNS connections, $SEED_POSTS seeded posts"
} | tee "$WORK/env.txt" >&2

# ---- 2. PocketBase -------------------------------------------------------------------------
PB_PORT="$(free_port)"
log "PocketBase on 127.0.0.1:$PB_PORT (data in $WORK/pb)"
PB_PID="$("$PB_DIR/start.sh" "$WORK/pb" "$PB_PORT")"
OUT_DIR="$WORK/pb/bench" "$PB_DIR/bench.sh" "$PB_PORT" "$PB_PID" >&2
"$PB_DIR/stop.sh" "$WORK/pb"
PB_PID=""

# ---- 3. Ferrobase --------------------------------------------------------------------------
FB_PORT="$(free_port)"
FB_BASE="http://127.0.0.1:$FB_PORT"
mkdir -p "$WORK/fb"
log "Ferrobase on 127.0.0.1:$FB_PORT (data in $WORK/fb)"
"$FERROBASE_BIN" admin create --email "$FB_ADMIN_EMAIL" --password "$FB_ADMIN_PASS" \
  --data-dir "$WORK/fb/data" >"$WORK/fb/admin.log" 2>&1 || { cat "$WORK/fb/admin.log" >&2; die "admin create failed"; }
nohup "$FERROBASE_BIN" serve --data-dir "$WORK/fb/data" --http "127.0.0.1:$FB_PORT" \
  >"$WORK/fb/ferrobase.log" 2>&1 &
FB_PID=$!
for _ in $(seq 1 100); do
  curl -fsS -o /dev/null --max-time 1 "$FB_BASE/v1/health" 2>/dev/null && break
  kill -0 "$FB_PID" 2>/dev/null || { cat "$WORK/fb/ferrobase.log" >&2; die "ferrobase exited"; }
  sleep 0.2
done
curl -fsS -o /dev/null "$FB_BASE/v1/health" || die "ferrobase health check timed out"
FB_TOKEN="$(curl -fsS -X POST "$FB_BASE/v1/admin/auth/login" -H 'Content-Type: application/json' \
  -d "$(jq -n --arg e "$FB_ADMIN_EMAIL" --arg p "$FB_ADMIN_PASS" '{email: $e, password: $p}')" | jq -r .token)"
curl -fsS -o "$WORK/fb/schema-apply.json" -X POST "$FB_BASE/v1/admin/schema/apply" \
  -H "Authorization: Bearer $FB_TOKEN" -H 'Content-Type: application/json' -d '{"collections":[{
    "name": "posts",
    "fields": {"title": {"type": "text", "required": true}, "body": {"type": "text"},
               "views": {"type": "integer"}, "published": {"type": "bool"}},
    "rules": {"list": "true", "view": "true", "create": "true", "update": "true", "delete": "true"}}]}' \
  || die "schema apply failed"
log "ferrobase healthy (pid $FB_PID), collection posts applied"

# Same bench.sh, /v1 routes. Login points at the identity route from the API design: until it
# exists it answers 404 and the row is reported as n/a.
POSTS_PATH=/v1/collections/posts/records \
USERS_PATH=/v1/auth/signup \
AUTH_PATH=/v1/auth/login \
AUTH_BODY='{"email":"bench@example.com","password":"BenchPass123!"}' \
LIST_QUERY='limit=20&count=true' \
FILTER_QUERY='limit=20&filter=%28views%3E500%20%26%26%20published%3Dtrue%29&sort=-views' \
HEALTH_PATH=/v1/health \
COUNT_QUERY='limit=1&count=true' COUNT_JQ='.total' \
SEED_SCRIPT="$HERE/seed-ferrobase.sh" \
OUT_DIR="$WORK/fb/bench" "$PB_DIR/bench.sh" "$FB_PORT" "$FB_PID" >&2
kill "$FB_PID"
for _ in $(seq 1 50); do kill -0 "$FB_PID" 2>/dev/null || break; sleep 0.1; done
FB_PID=""

# ---- 4. one table --------------------------------------------------------------------------
# bench.sh rows: | label | req/s | p50 | p99 | requests | non-2xx+errors | VmHWM | RSS after | cpu |
python3 - "$WORK/pb/bench" "$WORK/fb/bench" <<'PY' | tee "$WORK/table.md"
import json, sys

def rows(d):
    out = {}
    for line in open(f"{d}/summary.md"):
        c = [x.strip() for x in line.strip().strip("|").split("|")]
        if len(c) == 9 and c[0].startswith("("):
            out[c[0][1]] = dict(rps=float(c[1]), p50=float(c[2]), p99=float(c[3]),
                                total=int(c[4]), bad=int(c[5]), hwm=c[6], cpu=c[8])
    seed = json.load(open(f"{d}/seed.json"))
    return out, seed

pb, pb_seed = rows(sys.argv[1])
fb, fb_seed = rows(sys.argv[2])
order = [("b", "list 20 (with total count)"), ("c", "view by id"),
         ("d", "filter + sort (no index)"), ("e", "login"), ("a", "create")]

def ratio(num, den):
    return f"{num / den:.2f}×" if num and den else "–"

def f(x, nd=1):
    return f"{x:,.{nd}f}"

print("| scenario | PocketBase req/s | Ferrobase req/s | req/s ratio | PB p50 ms | FB p50 ms | p50 ratio "
      "| PB p99 ms | FB p99 ms | p99 ratio | PB peak RSS MiB | FB peak RSS MiB | memory ratio |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
notes = []
for k, name in order:
    p, q = pb[k], fb[k]
    if k == "e" and q["bad"] >= q["total"]:
        print(f"| {name} | {f(p['rps'], 0)} | n/a (identity not built yet) | – | {f(p['p50'])} | – | – "
              f"| {f(p['p99'])} | – | – | {p['hwm']} | – | – |")
        continue
    for who, r in (("PocketBase", p), ("Ferrobase", q)):
        if r["bad"]:
            notes.append(f"- {who} {name}: {r['bad']} of {r['total']} responses were non-2xx or errors")
    print(f"| {name} | {f(p['rps'], 0)} | {f(q['rps'], 0)} | {ratio(q['rps'], p['rps'])} "
          f"| {f(p['p50'])} | {f(q['p50'])} | {ratio(p['p50'], q['p50'])} "
          f"| {f(p['p99'])} | {f(q['p99'])} | {ratio(p['p99'], q['p99'])} "
          f"| {p['hwm']} | {q['hwm']} | {ratio(float(p['hwm']), float(q['hwm']))} |")
ps, qs = pb_seed["inserts_per_sec"], fb_seed["inserts_per_sec"]
print(f"| seed {pb_seed['posts_created']:,} posts (sequential creates, 1 connection) | {f(ps, 0)} "
      f"| {f(qs, 0)} | {ratio(qs, ps)} | | | | | | | | | |")
print()
print("Ratios: req/s = Ferrobase / PocketBase; p50, p99 and memory = PocketBase / Ferrobase (> 1× is better for Ferrobase).")
print("CPU cores used during each scenario (server / load tool / whole machine):")
for k, name in order:
    print(f"- {name}: PocketBase {pb[k]['cpu']}; Ferrobase {fb[k]['cpu']}")
for n in notes:
    print(n)
PY
log "raw output in $WORK"
