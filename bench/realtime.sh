#!/usr/bin/env bash
# Realtime (SSE) and delta-sync benchmarks of issue #8, with bench/rtload as the client, and
# PocketBase's realtime fan-out side by side (same machine, same run).
#
#   bench/realtime.sh                                  # builds ferrobase + rtload in release
#   FERROBASE_BIN=/path/to/ferrobase bench/realtime.sh # reuse a built server binary
#   IDLE_SECS=600 bench/realtime.sh                    # the issue's 10-minute idle hold
#   ONLY=idle,fanout bench/realtime.sh                 # a subset: idle fanout resume changes pb
#   SKIP_PB=1 bench/realtime.sh                        # no PocketBase comparison
#   PERF=1 bench/realtime.sh                           # perf record -g the server during fan-out
#   RTLOAD_THREADS=2 bench/realtime.sh                 # client runtime threads (default 1)
#
# Phases, each against one Ferrobase server started here on a fresh SQLite data dir:
#   idle     IDLE_SUBS (10000) SSE subscribers held IDLE_SECS (60) s: alive at the end, drops,
#            heartbeats; server VmRSS before connecting and with all connected → KiB/subscriber.
#   fanout   FANOUT_SUBS (1000) subscribers; (1) latency: FANOUT_RATE (20) records/s for
#            FANOUT_RECORDS (600) records; (2) sustained: SUSTAIN_RATE (100) records/s for
#            SUSTAIN_RECORDS (3000); (3) saturation: as fast as SAT_WRITERS (2) writers go for
#            SAT_RECORDS (2000). Each: deliveries/s, latency per delivery, missing/duplicates.
#   resume   one subscriber misses RESUME_MISSED (10000) events (written by /v1/batch), then
#            reconnects with Last-Event-ID: time to replay them all.
#   changes  SYNC_ROWS (100000) rows seeded by /v1/batch (100 per request) into `sync`; paging
#            /changes since before the seed (limit 5000), then an initial sync (no since).
#   pb       PB_SUBS (200) subscribers, PB_ROUNDS (30) sequential creates 0.2 s apart:
#            PocketBase with the shared realtime_fanout.py, Ferrobase with rtload at 5/s.
# Server settings: FERROBASE_REALTIME_MAX_PER_IP=20000, FERROBASE_AUTH_RATE_LIMITS_ENABLED=false
# (the global per-IP limit would refuse 10,000 streams), FERROBASE_REALTIME_HEARTBEAT=HEARTBEAT
# (15s). Results: one JSON per phase in WORK (/tmp/ferrobase-rtbench/<timestamp>), a summary on
# stdout. The server is stopped on exit, also after a failure.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
SHARED_BENCH="${SHARED_BENCH:-/work/shared/bench}"
PB_DIR="$SHARED_BENCH/pocketbase"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
WORK="${WORK:-/tmp/ferrobase-rtbench/$STAMP}"
IDLE_SUBS="${IDLE_SUBS:-10000}" IDLE_SECS="${IDLE_SECS:-60}"
FANOUT_SUBS="${FANOUT_SUBS:-1000}" FANOUT_RATE="${FANOUT_RATE:-20}" FANOUT_RECORDS="${FANOUT_RECORDS:-600}"
SUSTAIN_RATE="${SUSTAIN_RATE:-100}" SUSTAIN_RECORDS="${SUSTAIN_RECORDS:-3000}"
SAT_WRITERS="${SAT_WRITERS:-2}" SAT_RECORDS="${SAT_RECORDS:-2000}"
RESUME_MISSED="${RESUME_MISSED:-10000}" SYNC_ROWS="${SYNC_ROWS:-100000}"
PB_SUBS="${PB_SUBS:-200}" PB_ROUNDS="${PB_ROUNDS:-30}"
RTLOAD_THREADS="${RTLOAD_THREADS:-1}" HEARTBEAT="${HEARTBEAT:-15s}" ONLY="${ONLY:-}" SKIP_PB="${SKIP_PB:-0}" PERF="${PERF:-0}"
ADMIN_EMAIL="admin@example.com" ADMIN_PASS="bench-pass-123"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"

log() { echo "[realtime] $*" >&2; }
die() { log "$*"; exit 1; }
want() { [[ -z "$ONLY" || ",$ONLY," == *",$1,"* ]]; }
for t in curl jq python3; do command -v "$t" >/dev/null || die "missing $t"; done
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
mkdir -p "$WORK"

# ---- binaries --------------------------------------------------------------------------------
if [[ -z "${FERROBASE_BIN:-}" ]]; then
  log "building ferrobase (release) ..."
  (cd "$REPO" && cargo build --release -p ferrobase >&2)
  FERROBASE_BIN="$CARGO_TARGET_DIR/release/ferrobase"
fi
export -n FERROBASE_BIN 2>/dev/null || true  # ferrobase refuses unknown FERROBASE_* settings
log "building rtload (release) ..."
(cd "$HERE/rtload" && CARGO_TARGET_DIR="$CARGO_TARGET_DIR/rtload" cargo build --release >&2)
RTLOAD="$CARGO_TARGET_DIR/rtload/release/rtload"

FB_PID="" PB_STARTED=""
cleanup() {
  [[ -n "$FB_PID" ]] && kill "$FB_PID" 2>/dev/null && wait "$FB_PID" 2>/dev/null
  [[ -n "$PB_STARTED" ]] && "$PB_DIR/stop.sh" "$WORK/pb" >/dev/null 2>&1
  true
}
trap cleanup EXIT

# ---- Ferrobase -------------------------------------------------------------------------------
fb_start() {
  FB_PORT="$(free_port)" FB_BASE="http://127.0.0.1:$FB_PORT"
  local dir="$WORK/fb-$1"
  mkdir -p "$dir"
  "$FERROBASE_BIN" admin create --email "$ADMIN_EMAIL" --password "$ADMIN_PASS" --data-dir "$dir/data" \
    >"$dir/admin.log" 2>&1 || { cat "$dir/admin.log" >&2; die "admin create failed"; }
  FERROBASE_REALTIME_MAX_PER_IP=20000 FERROBASE_AUTH_RATE_LIMITS_ENABLED=false \
    FERROBASE_REALTIME_HEARTBEAT="$HEARTBEAT" \
    nohup "$FERROBASE_BIN" serve --data-dir "$dir/data" --http "127.0.0.1:$FB_PORT" \
    >"$dir/ferrobase.log" 2>&1 &
  FB_PID=$!
  for _ in $(seq 1 100); do
    curl -fsS -o /dev/null --max-time 1 "$FB_BASE/v1/health" 2>/dev/null && break
    kill -0 "$FB_PID" 2>/dev/null || { cat "$dir/ferrobase.log" >&2; die "ferrobase exited"; }
    sleep 0.2
  done
  local token
  token="$(curl -fsS -X POST "$FB_BASE/v1/admin/auth/login" -H 'Content-Type: application/json' \
    -d "$(jq -n --arg e "$ADMIN_EMAIL" --arg p "$ADMIN_PASS" '{email: $e, password: $p}')" | jq -r .token)"
  # `rt` for the streams, `sync` for /changes, `posts` as PocketBase's (the pb phase).
  local open='{"list": "true", "view": "true", "create": "true"}'
  local fields='{"i": {"type": "integer"}, "t": {"type": "integer"}, "body": {"type": "text"}}'
  local body
  body="$(jq -n --argjson r "$open" --argjson f "$fields" '{allow_destructive: true, collections: [
    {name: "rt", fields: $f, rules: $r}, {name: "sync", fields: $f, rules: $r},
    {name: "posts", fields: {title: {type: "text"}, body: {type: "text"}, views: {type: "integer"},
      published: {type: "bool"}, i: {type: "integer"}, t: {type: "integer"}}, rules: $r}]}')"
  curl -fsS -o "$dir/schema.json" -X POST "$FB_BASE/v1/admin/schema/apply" \
    -H "Authorization: Bearer $token" -H 'Content-Type: application/json' -d "$body" ||
    die "schema apply failed: $(cat "$dir/schema.json" 2>/dev/null)"
  log "ferrobase $1: pid $FB_PID on $FB_BASE"
}
fb_stop() { [[ -n "$FB_PID" ]] && kill "$FB_PID" && wait "$FB_PID" 2>/dev/null; FB_PID=""; true; }
rss_kib() { awk '$1 == "VmRSS:" {print $2}' "/proc/$1/status"; }

rtload() {  # name args...: runs rtload against the current server, JSON to WORK/name.json
  local name="$1"; shift
  log "rtload $name: $*"
  "$RTLOAD" --base "$FB_BASE" --pid "$FB_PID" --threads "$RTLOAD_THREADS" "$@" >"$WORK/$name.json"
}

# One server per phase (fresh RSS, fresh log): idle.
if want idle; then
  fb_start idle
  sleep 1
  log "idle server RSS before: $(rss_kib "$FB_PID") KiB"
  rtload idle idle --subscribers "$IDLE_SUBS" --duration "$IDLE_SECS"
  fb_stop
fi

if want fanout; then
  fb_start fanout
  rtload fanout-latency fanout --subscribers "$FANOUT_SUBS" --rate "$FANOUT_RATE" --records "$FANOUT_RECORDS"
  rtload fanout-sustained fanout --subscribers "$FANOUT_SUBS" --rate "$SUSTAIN_RATE" --records "$SUSTAIN_RECORDS"
  if [[ "$PERF" == 1 ]]; then
    perf record -F 499 -g -p "$FB_PID" -o "$WORK/perf-fanout.data" -- sleep 20 2>"$WORK/perf.log" &
    PERF_PID=$!
  fi
  rtload fanout-saturation fanout --subscribers "$FANOUT_SUBS" --rate 0 --writers "$SAT_WRITERS" --records "$SAT_RECORDS"
  if [[ "$PERF" == 1 ]]; then
    wait "$PERF_PID" || true
    perf report -i "$WORK/perf-fanout.data" --no-children --percent-limit 1.5 --stdio -g none \
      >"$WORK/perf-fanout.txt" 2>/dev/null || true
    rm -f "$WORK/perf-fanout.data"
  fi
  fb_stop
fi

if want resume; then
  fb_start resume
  rtload resume resume --missed "$RESUME_MISSED"
  fb_stop
fi

if want changes; then
  fb_start changes
  rtload changes --collection sync changes --rows "$SYNC_ROWS" --limit 5000
  fb_stop
fi

if want pb; then
  fb_start pb
  rtload pb-ferrobase --collection posts fanout --subscribers "$PB_SUBS" --rate 5 --records "$PB_ROUNDS"
  fb_stop
  if [[ "$SKIP_PB" == 0 ]]; then
    PB_BIN="$("$PB_DIR/setup.sh")"
    export PB_BIN
    PB_PORT="$(free_port)"
    PB_PID="$("$PB_DIR/start.sh" "$WORK/pb" "$PB_PORT" | tail -1)"
    PB_STARTED=1
    log "pocketbase: pid $PB_PID on 127.0.0.1:$PB_PORT"
    "$(dirname "$PB_BIN")/python" "$PB_DIR/realtime_fanout.py" --base "http://127.0.0.1:$PB_PORT" \
      --subscribers "$PB_SUBS" --rounds "$PB_ROUNDS" --pid "$PB_PID" >"$WORK/pb-pocketbase.json" ||
      log "realtime_fanout.py reported missing deliveries (see $WORK/pb-pocketbase.json)"
    "$PB_DIR/stop.sh" "$WORK/pb" >/dev/null 2>&1
    PB_STARTED=""
  fi
fi

# ---- summary ---------------------------------------------------------------------------------
j() { [[ -f "$WORK/$1.json" ]] && jq -r "$2" "$WORK/$1.json"; }
echo "## realtime.sh $(date -u +%FT%TZ), commit $(git -C "$REPO" rev-parse --short HEAD), raw: $WORK"
j idle '"idle: \(.subscribers) subscribers, \(.duration_s) s: \(.alive_at_end) alive at the end, \(.failed_to_open) failed to open, \(.dropped_while_held) dropped; connect all \(.connect_all_s) s; heartbeats/sub \(.heartbeats_per_subscriber_min)-\(.heartbeats_per_subscriber_max); server RSS \(.server_rss_kib.before) → \(.server_rss_kib.connected) → \(.server_rss_kib.end) KiB = \(.server_kib_per_subscriber) KiB/subscriber (\(.server_kib_per_subscriber_end) at the end); server CPU while idle \(.server_cpu_s_while_held) s"' || true
for f in fanout-latency fanout-sustained fanout-saturation pb-ferrobase; do
  j "$f" '"\(input_filename | split("/") | last | rtrimstr(".json")): \(.subscribers) subs, \(.records_written) records at \(.write_rate_per_s)/s (target \(.rate_target_per_s)): \(.deliveries) deliveries, \(.deliveries_per_s) deliveries/s, missing \(.missing), duplicates \(.duplicates), out of order \(.out_of_order); send→parsed p50 \(.send_to_parsed.p50_ms) p99 \(.send_to_parsed.p99_ms) max \(.send_to_parsed.max_ms) ms; response→parsed p50 \(.response_to_parsed.p50_ms) p99 \(.response_to_parsed.p99_ms) max \(.response_to_parsed.max_ms) ms; write p50 \(.write_latency.p50_ms) ms; server CPU \(.server_cpu_s) s, client CPU \(.client_cpu_s_window) s over \(.window_s) s"' || true
done
j resume '"resume: \(.missed) missed → \(.replayed) replayed in \(.reconnect_to_all_replayed_s) s (\(.replayed_per_s)/s; ready after \(.reconnect_to_ready_ms) ms), missing \(.missing), duplicates \(.duplicates), out of order \(.out_of_order), resets \(.resets)"' || true
j changes '"changes: seeded \(.rows) rows in \(.seed_batch_s) s (\(.seed_rows_per_s) rows/s); incremental \(.incremental.changes) changes in \(.incremental.s) s = \(.incremental.changes_per_s)/s (\(.incremental.pages) pages, \(.incremental.mib) MiB, slowest page \(.incremental.max_page_ms) ms); initial sync \(.initial_sync.changes) rows in \(.initial_sync.s) s = \(.initial_sync.changes_per_s)/s (slowest page \(.initial_sync.max_page_ms) ms)"' || true
j pb-pocketbase '"pocketbase: \(.subscribers) subs, \(.rounds) rounds: missing \(.missing_deliveries); per delivery p50 \(.per_delivery_ms.p50) p99 \(.per_delivery_ms.p99) ms; time to all p50 \(.time_to_all_ms.p50) max \(.time_to_all_ms.max) ms; connect+subscribe all \(.connect_and_subscribe_all_s) s; RSS \(.server_rss_mib.before) → \(.server_rss_mib.with_subscribers) MiB"' || true
