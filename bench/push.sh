#!/usr/bin/env bash
# Push fan-out benchmark of issue #9: one push to DEVICES (100,000) devices through the real APNs
# and FCM plugins, against the loopback fakes of plugins/testkit run as a process (fake-push)
# with LATENCY_MS (50) of provider latency per request.
#
#   bench/push.sh                                   # builds ferrobase + fake-push in release
#   FERROBASE_BIN=target/release/ferrobase bench/push.sh   # reuse built binaries (fake-push
#                                                   # from the same directory, or FAKE_PUSH_BIN)
#   FB_DATABASE=postgres bench/push.sh              # a fresh PostgreSQL database (or "both")
#   DEVICES=20000 PUSHES=1 bench/push.sh            # smaller / fewer pushes
#   PERF=1 bench/push.sh                            # perf record -g the server during push 1
#
# What it does, per database: a fresh data dir (and, on PostgreSQL, a fresh database on PG_URL),
# `ferrobase admin create` (which migrates), DEVICES devices seeded straight into
# _fb_devices/_fb_device_topics with SQL (half ios, half android by default, one user per two devices,
# all on topic `all`), `ferrobase serve --config <fake-push's server.toml>`, sign-in, then
# PUSHES (2) pushes one after the other to topic `all`, each measured by bench/push-measure.py:
# seconds from the POST to the fan-out being complete (every delivery row exists) and to the
# job being `done`, deliveries/s (sent / time to done), counts, whether every device got
# exactly one provider request (the fakes' per-token tallies, GET stats_url) and the server's
# VmRSS (and RssAnon: without the SQLite file's mapped pages) before, at its peak (sampled every
# POLL = 0.1 s) and after, and the CPU seconds the server and the fakes used. The second push shows
# whether memory stays flat. A summary table on stdout; JSON and logs in WORK.
#
# Environment: FERROBASE_BIN, FAKE_PUSH_BIN, CARGO_TARGET_DIR, DEVICES (100000), LATENCY_MS (50),
# APNS_STREAMS (1000), PUSHES (2), ANDROID_PERCENT (50), FB_DATABASE (sqlite | postgres | both), PG_URL
# (postgres://postgres@127.0.0.1:5432: server for the scratch database; its `postgres` database
# is used to create and drop it), POLL (0.1), PERF (0), WORK (/tmp/ferrobase-pushbench/<stamp>).
# FERROBASE_PUSH_* settings in the environment reach the server (e.g. FERROBASE_PUSH_CONCURRENCY).
# Needs curl, jq, python3, sqlite3 (and psql for PostgreSQL; perf for PERF=1).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
WORK="${WORK:-/tmp/ferrobase-pushbench/$STAMP}"
DEVICES="${DEVICES:-100000}" LATENCY_MS="${LATENCY_MS:-50}" APNS_STREAMS="${APNS_STREAMS:-1000}"
PUSHES="${PUSHES:-2}" ANDROID_PERCENT="${ANDROID_PERCENT:-50}" FB_DATABASE="${FB_DATABASE:-sqlite}" PERF="${PERF:-0}"
PG_URL="${PG_URL:-postgres://postgres@127.0.0.1:5432}"
ADMIN_EMAIL="admin@example.com" ADMIN_PASS="bench-pass-123"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
export POLL="${POLL:-0.1}"

log() { echo "[push] $*" >&2; }
die() { log "$*"; exit 1; }
for t in curl jq python3 sqlite3; do command -v "$t" >/dev/null || die "missing $t"; done
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
mkdir -p "$WORK"

# ---- binaries --------------------------------------------------------------------------------
if [[ -z "${FERROBASE_BIN:-}" ]]; then
  log "building ferrobase and fake-push (release) ..."
  (cd "$REPO" && cargo build --release -p ferrobase -p ferrobase-push-testkit >&2)
  FERROBASE_BIN="$CARGO_TARGET_DIR/release/ferrobase"
fi
FAKE_PUSH_BIN="${FAKE_PUSH_BIN:-$(dirname "$FERROBASE_BIN")/fake-push}"
[[ -x "$FERROBASE_BIN" ]] || die "no ferrobase binary at $FERROBASE_BIN"
[[ -x "$FAKE_PUSH_BIN" ]] || die "no fake-push binary at $FAKE_PUSH_BIN (cargo build --release -p ferrobase-push-testkit)"
export -n FERROBASE_BIN 2>/dev/null || true  # ferrobase refuses unknown FERROBASE_* settings

FB_PID="" FAKE_PID="" PG_DB=""
cleanup() {
  [[ -n "$FB_PID" ]] && kill "$FB_PID" 2>/dev/null && wait "$FB_PID" 2>/dev/null
  [[ -n "$FAKE_PID" ]] && kill "$FAKE_PID" 2>/dev/null && wait "$FAKE_PID" 2>/dev/null
  [[ -n "$PG_DB" ]] && psql "$PG_URL/postgres" -qc "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null 2>&1
  true
}
trap cleanup EXIT

# ---- the fake providers ----------------------------------------------------------------------
fake_start() {
  local dir="$WORK/fake-$1"
  mkdir -p "$dir"
  "$FAKE_PUSH_BIN" --dir "$dir" --latency-ms "$LATENCY_MS" --apns-streams "$APNS_STREAMS" \
    >"$dir/fake.json" 2>"$dir/fake.log" &
  FAKE_PID=$!
  for _ in $(seq 1 100); do [[ -s "$dir/fake.json" ]] && break; sleep 0.1; done
  [[ -s "$dir/fake.json" ]] || { cat "$dir/fake.log" >&2; die "fake-push did not start"; }
  FAKE_CONFIG="$(jq -r .config "$dir/fake.json")" STATS_URL="$(jq -r .stats_url "$dir/fake.json")"
  log "fake-push: pid $FAKE_PID, $(jq -c '{apns_base_url, fcm_base_url, stats_url}' "$dir/fake.json")"
}
fake_stop() { if [[ -n "$FAKE_PID" ]]; then kill "$FAKE_PID"; wait "$FAKE_PID" 2>/dev/null || true; fi; FAKE_PID=""; }

# ---- seeding ---------------------------------------------------------------------------------
# Device i: id dev-<i>, user user-<i/2>, android (token fcm-<i>) for ANDROID_PERCENT of them
# (50: every other one), the others ios (token apns-<i>); every device on topic `all` (the
# topics column and the membership table).
seed_sqlite() {  # db file
  local now; now="$(date -u +%Y-%m-%dT%H:%M:%S.000000Z)"
  sqlite3 -bail "$1" >/dev/null <<SQL
PRAGMA busy_timeout = 10000;
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < $DEVICES)
INSERT INTO _fb_devices (id, user_id, platform, token, topics, active, last_seen_at, created_at, updated_at)
SELECT printf('dev-%07d', i), printf('user-%07d', i / 2),
       CASE WHEN (i * $ANDROID_PERCENT) % 100 < $ANDROID_PERCENT THEN 'android' ELSE 'ios' END,
       printf('%s-%07d', CASE WHEN (i * $ANDROID_PERCENT) % 100 < $ANDROID_PERCENT THEN 'fcm' ELSE 'apns' END, i),
       '["all"]', 1, '$now', '$now', '$now' FROM n;
INSERT INTO _fb_device_topics (topic, device_id) SELECT 'all', id FROM _fb_devices;
COMMIT;
SQL
}
seed_postgres() {  # database URL
  psql "$1" -v ON_ERROR_STOP=1 -q <<SQL
BEGIN;
INSERT INTO _fb_devices (id, user_id, platform, token, topics, active, last_seen_at, created_at, updated_at)
SELECT format('dev-%s', lpad(i::text, 7, '0')), format('user-%s', lpad((i / 2)::text, 7, '0')),
       CASE WHEN (i * $ANDROID_PERCENT) % 100 < $ANDROID_PERCENT THEN 'android' ELSE 'ios' END,
       format('%s-%s', CASE WHEN (i * $ANDROID_PERCENT) % 100 < $ANDROID_PERCENT THEN 'fcm' ELSE 'apns' END,
              lpad(i::text, 7, '0')),
       '["all"]'::jsonb, TRUE, now(), now(), now() FROM generate_series(0, $DEVICES - 1) AS i;
INSERT INTO _fb_device_topics (topic, device_id) SELECT 'all', id FROM _fb_devices;
COMMIT;
ANALYZE _fb_devices; ANALYZE _fb_device_topics;
SQL
}

# ---- one database ----------------------------------------------------------------------------
run_db() {  # sqlite | postgres
  local db="$1" dir="$WORK/fb-$1" db_args=() t0
  mkdir -p "$dir"
  if [[ "$db" == postgres ]]; then
    command -v psql >/dev/null || die "missing psql"
    PG_DB="fb_pushbench_$$"
    psql "$PG_URL/postgres" -qc "CREATE DATABASE $PG_DB" >/dev/null || die "cannot create $PG_DB on $PG_URL"
    db_args=(--database-url "$PG_URL/$PG_DB")
  fi
  fake_start "$db"
  "$FERROBASE_BIN" admin create --email "$ADMIN_EMAIL" --password "$ADMIN_PASS" --data-dir "$dir/data" \
    "${db_args[@]}" >"$dir/admin.log" 2>&1 || { cat "$dir/admin.log" >&2; die "admin create failed"; }
  log "$db: seeding $DEVICES devices ..."
  t0=$(date +%s.%N)
  if [[ "$db" == postgres ]]; then seed_postgres "$PG_URL/$PG_DB"; else seed_sqlite "$dir/data/data.db"; fi
  log "$db: seeded in $(python3 -c "print(round($(date +%s.%N) - $t0, 1))") s"
  local port; port="$(free_port)"
  local base="http://127.0.0.1:$port"
  FERROBASE_AUTH_RATE_LIMITS_ENABLED=false \
    "$FERROBASE_BIN" serve --config "$FAKE_CONFIG" --data-dir "$dir/data" --http "127.0.0.1:$port" \
    "${db_args[@]}" >"$dir/ferrobase.log" 2>&1 &
  FB_PID=$!
  for _ in $(seq 1 100); do
    curl -fsS -o /dev/null --max-time 1 "$base/v1/ready" 2>/dev/null && break
    kill -0 "$FB_PID" 2>/dev/null || { cat "$dir/ferrobase.log" >&2; die "ferrobase exited"; }
    sleep 0.2
  done
  local token
  token="$(curl -fsS -X POST "$base/v1/admin/auth/login" -H 'Content-Type: application/json' \
    -d "$(jq -n --arg e "$ADMIN_EMAIL" --arg p "$ADMIN_PASS" '{email: $e, password: $p}')" | jq -r .token)"
  log "$db: ferrobase pid $FB_PID on $base, RSS $(awk '$1 == "VmRSS:" {print $2}' "/proc/$FB_PID/status") KiB"
  for round in $(seq 1 "$PUSHES"); do
    local perf_pid=""
    if [[ "$PERF" == 1 && "$round" == 1 ]]; then
      perf record -g -o "$WORK/perf-$db.data" -p "$FB_PID" 2>"$WORK/perf-$db.log" &
      perf_pid=$!
      sleep 0.5
    fi
    ROUND="$round" FAKE_PID="$FAKE_PID" python3 "$HERE/push-measure.py" "$base" "$token" "$FB_PID" "$STATS_URL" "$DEVICES" all \
      >"$WORK/$db-push$round.json" || die "$db push $round failed"
    if [[ -n "$perf_pid" ]]; then kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true; fi
    log "$db push $round: $(jq -c 'del(.rss_samples, .apns.histogram, .fcm.histogram)' "$WORK/$db-push$round.json")"
  done
  kill "$FB_PID"; wait "$FB_PID" 2>/dev/null || true; FB_PID=""
  fake_stop
  if [[ -n "$PG_DB" ]]; then
    psql "$PG_URL/postgres" -qc "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null; PG_DB=""
  fi
}

case "$FB_DATABASE" in
  sqlite | postgres) run_db "$FB_DATABASE" ;;
  both) run_db sqlite; run_db postgres ;;
  *) die "FB_DATABASE must be sqlite, postgres or both" ;;
esac

# ---- summary ---------------------------------------------------------------------------------
echo
echo "Push to $DEVICES devices, ${LATENCY_MS} ms provider latency ($(git -C "$REPO" rev-parse --short HEAD), $STAMP)"
echo
echo "| database | push | fan-out complete (s) | done (s) | deliveries/s | sent | failed | each device once | CPU s server / fakes | RSS before / peak / after (MiB) | of which anon |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for f in "$WORK"/*-push*.json; do
  name="$(basename "$f" .json)"
  jq -r --arg db "${name%-push*}" --arg round "${name##*-push}" \
    '"| \($db) | \($round) | \(.fanout_complete_s) | \(.done_s) | \(.deliveries_per_s) | \(.counts.sent) | \(.counts.failed) | \(.each_device_once) | \(.cpu_s.server) / \(.cpu_s.fake_push) | \(.rss_kib.before / 1024 | floor) / \(.rss_kib.peak / 1024 | floor) / \(.rss_kib.after / 1024 | floor) | \(.rss_anon_kib.before / 1024 | floor) / \(.rss_anon_kib.peak / 1024 | floor) / \(.rss_anon_kib.after / 1024 | floor) |"' "$f"
done
echo
echo "Results: $WORK"
