#!/usr/bin/env bash
# Ferrobase vs PocketBase, side by side, in one run on this machine, with reference rows for the
# machine's own limits (HTTP stack without a database; PostgreSQL itself when Ferrobase uses it).
#
#   bench/run.sh                                  # builds the release binary first
#   FERROBASE_BIN=/path/to/ferrobase bench/run.sh # use an already-built binary
#   FERROBASE_REV=HEAD bench/run.sh               # build a commit, not the working tree
#   DURATION=5 CONNS=16 bench/run.sh              # shorter / lighter load
#   FB_DATABASE=postgres bench/run.sh             # Ferrobase on a scratch PostgreSQL database
#   ONLY=view,create,health bench/run.sh          # a subset of the scenarios (names below)
#   SKIP_PB=1 bench/run.sh                        # Ferrobase only (PocketBase columns print "-")
#
# What it does:
#   1. builds `ferrobase` in release (CARGO_TARGET_DIR is honoured), unless FERROBASE_BIN is set;
#   2. installs PocketBase 0.40.6 with the shared harness (SHARED_BENCH/pocketbase/setup.sh);
#   3. PocketBase: fresh data dir on a free loopback port (start.sh), the notes scenarios (below),
#      then seed + 5 scenarios (bench.sh), the single-client creates, stop (stop.sh);
#   4. Ferrobase: fresh data dir on a free loopback port, on SQLite (default) or, with
#      FB_DATABASE=postgres, on a fresh PostgreSQL database created for this run
#      (`ferrobase serve --database-url`); admin account, `posts` collection with open rules
#      (schema apply), the notes scenarios, GET /v1/health, then the very same bench.sh (same
#      seed.py, same load tool, same settings) pointed at the /v1 routes, the single-client
#      creates, stop. Rate limits are off (FERROBASE_AUTH_RATE_LIMITS_ENABLED);
#   5. with FB_DATABASE=postgres: `pgbench -S -M prepared` (CONNS clients, 2 threads, DURATION s)
#      on another scratch database (pgbench -i -s 10), with Ferrobase stopped;
#   6. prints ONE markdown table: req/s, p50, p99, peak RSS for both, and the ratios
#      (throughput: ours / PocketBase; latency and memory: PocketBase / ours, so > 1 is better),
#      plus the reference rows and "view by id as % of /v1/health" (and "% of pgbench -S").
#   Servers are stopped and scratch databases dropped on exit, also after a failure.
#
# Scenarios (bench.sh): list 20 with total count, view by id, filter+sort (no index),
# login, create (last, so the reads all see SEED_POSTS rows). Peak RSS per scenario is VmHWM
# from /proc/PID/status, reset before each scenario. Both servers are seeded with SEED_POSTS
# posts by seed.py: sequential single creates over one keep-alive connection (no batch).
# Then, measured the same way by bench/scenario.sh (bench.sh cannot send headers): a `notes`
# collection (title, body, owner -> users; SEED_NOTES rows, all owned by the bench user, seeded
# by bench/seed-notes.py) listed 20 at a time with the count, signed in as that user, under the
# rule "owner = the caller"; and the same list with an open rule, anonymously (and on Ferrobase
# also signed in) to price the token check and the rule; on Ferrobase the same six again without
# the count (NOTES_NOCOUNT=0 skips those). Also by scenario.sh: single client sequential creates
# (one connection, one wrk thread, the create body of bench.sh, DURATION s) on both servers, and
# GET /v1/health on Ferrobase (all middleware, no database) at CONNS connections.
#
# ONLY= (comma-separated; default: all) picks scenarios: list, view, filter, login, create,
# seed (the seeding row), notes (owner-rule list and the signed-in cost runs), health,
# seqcreate, createkey (Ferrobase only, needs wrk: the create with a unique Idempotency-Key per
# request, bench/idempotency-key.lua, right after the create, to price the key), pgbench (only
# with FB_DATABASE=postgres). Unless all of list, view, filter, login,
# create and seed are picked, the picked ones of those run one by one through scenario.sh (same
# measurement as bench.sh, same order) instead of bench.sh; posts are seeded when list, view,
# filter or seed is picked. SKIP_PB=1 skips the PocketBase half.
#
# Environment: FERROBASE_BIN, FERROBASE_REV, CARGO_TARGET_DIR, DURATION (10 s per scenario),
# CONNS (32), SEED_POSTS (10000), SEED_NOTES (10000), NOTES_NOCOUNT (1), ONLY (all), SKIP_PB (0),
# FB_DATABASE (sqlite | postgres), PG_URL (postgres://postgres@127.0.0.1:5432: server for the
# scratch databases, no database name; its `postgres` database is used to create and drop them),
# LOAD_TOOL (auto: oha if installed, else wrk), QUIET_MAX_WAIT (30 s: how long bench.sh waits
# for an idle machine before each scenario), SHARED_BENCH (/work/shared/bench),
# WORK (/tmp/ferrobase-bench/<timestamp>: data dirs, logs, raw load-tool output).
# Needs: curl, jq, python3, and oha or wrk (`apt-get install -y wrk`); with FB_DATABASE=postgres
# also psql and pgbench. Loopback only.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
export SHARED_BENCH="${SHARED_BENCH:-/work/shared/bench}"
PB_DIR="$SHARED_BENCH/pocketbase"
export DURATION="${DURATION:-10}" CONNS="${CONNS:-32}" SEED_POSTS="${SEED_POSTS:-10000}"
SEED_NOTES="${SEED_NOTES:-10000}"
export LOAD_TOOL="${LOAD_TOOL:-auto}" QUIET_MAX_WAIT="${QUIET_MAX_WAIT:-30}"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
WORK="${WORK:-/tmp/ferrobase-bench/$STAMP}"
FB_ADMIN_EMAIL="admin@example.com"
FB_ADMIN_PASS="bench-pass-123"
FB_DATABASE="${FB_DATABASE:-sqlite}"
PG_URL="${PG_URL:-postgres://postgres@127.0.0.1:5432}"
PG_URL="${PG_URL%/}"
ONLY="${ONLY:-}" SKIP_PB="${SKIP_PB:-0}"
# bench.sh's create body, for the scenarios run by scenario.sh (subset, single-client creates).
CREATE_BODY='{"title":"Benchmark post created under load","body":"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua. Ut enim.","views":123,"published":true}'

log() { echo "[run] $*" >&2; }
die() { log "$*"; exit 1; }

SCENARIOS="list view filter login create seed notes health seqcreate createkey pgbench"
ONLY="${ONLY// /}"
for n in ${ONLY//,/ }; do
  [[ " $SCENARIOS " == *" $n "* ]] || die "ONLY: unknown scenario '$n' (known: ${SCENARIOS// /, })"
done
want() { [[ -z "$ONLY" || ",$ONLY," == *",$1,"* ]]; }
want_any() { local n; for n in "$@"; do want "$n" && return 0; done; return 1; }
case "$FB_DATABASE" in
  sqlite) ;;
  postgres | postgresql) FB_DATABASE=postgres ;;
  *) die "FB_DATABASE must be sqlite or postgres, not '$FB_DATABASE'" ;;
esac
[[ "$SKIP_PB" == 0 || "$SKIP_PB" == 1 ]] || die "SKIP_PB must be 0 or 1"
if [[ "$FB_DATABASE" != postgres && -n "$ONLY" ]] && want pgbench; then
  log "ONLY has pgbench but FB_DATABASE is not postgres: no pgbench row"
fi
# Posts are seeded for the reads (and the seeding row); login and the creates need only the
# bench user, which the seed script signs up (with 0 posts).
if want_any list view filter seed; then POSTS_TO_SEED="$SEED_POSTS"; else POSTS_TO_SEED=0; fi
# bench.sh runs all five posts scenarios and the seed; a subset goes through scenario.sh.
POSTS_VIA=scenario
want list && want view && want filter && want login && want create && want seed && POSTS_VIA=bench.sh

for t in curl jq python3; do command -v "$t" >/dev/null || die "missing $t"; done
command -v oha >/dev/null || command -v wrk >/dev/null ||
  die "no load tool: apt-get install -y wrk (or cargo install oha --locked)"
[[ -x "$PB_DIR/bench.sh" ]] || die "shared harness not found in $PB_DIR (set SHARED_BENCH)"
if [[ "$FB_DATABASE" == postgres ]]; then
  for t in psql pgbench; do command -v "$t" >/dev/null || die "missing $t (FB_DATABASE=postgres)"; done
  psql "$PG_URL/postgres" -Atqc 'SELECT 1' >/dev/null || die "no PostgreSQL at $PG_URL"
fi

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
if [[ "$SKIP_PB" == 0 ]]; then
  PB_BIN="$("$PB_DIR/setup.sh")"
  export PB_BIN
fi

# Scratch PostgreSQL databases: created here, dropped on exit (also after a failure).
PG_DBS=()
pg_admin() { psql "$PG_URL/postgres" -X -q -v ON_ERROR_STOP=1 -c "$1" >&2; }
pg_create() {  # name
  pg_admin "CREATE DATABASE $1" || die "cannot create database $1 on $PG_URL"
  PG_DBS+=("$1")
}
pg_drop() {  # name
  local d keep=()
  pg_admin "DROP DATABASE IF EXISTS $1 WITH (FORCE)" || log "could not drop database $1"
  for d in "${PG_DBS[@]}"; do [[ "$d" == "$1" ]] || keep+=("$d"); done
  PG_DBS=("${keep[@]}")
}
stop_pid() {  # pid: SIGTERM, wait up to 10 s, then SIGKILL
  kill -0 "$1" 2>/dev/null || return 0
  kill "$1" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  log "pid $1 still running after 10 s, killing it"; kill -9 "$1" 2>/dev/null || true
}

PB_PID="" FB_PID=""
cleanup() {
  [[ -n "$PB_PID" ]] && stop_pid "$PB_PID"
  [[ -n "$FB_PID" ]] && stop_pid "$FB_PID"
  local d
  for d in "${PG_DBS[@]}"; do pg_drop "$d"; done
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

{
  echo "date (UTC): $(date -u '+%Y-%m-%d %H:%M')"
  echo "machine: $(nproc) cores, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), kernel $(uname -r)"
  if [[ "$SKIP_PB" == 0 ]]; then echo "pocketbase: $("$PB_BIN" --version)"; else echo "pocketbase: skipped (SKIP_PB=1)"; fi
  # With FERROBASE_BIN the binary may predate HEAD: print its build time too.
  echo "ferrobase: $("$FERROBASE_BIN" --version 2>/dev/null || echo '?') (repo HEAD $(git -C "$REPO" rev-parse --short "${FERROBASE_REV:-HEAD}" 2>/dev/null || echo '?')${FERROBASE_REV:+, built from that commit}; binary $FERROBASE_BIN built $(date -u -r "$FERROBASE_BIN" '+%Y-%m-%d %H:%M UTC'))"
  if [[ "$LOAD_TOOL" == oha ]] || { [[ "$LOAD_TOOL" == auto ]] && command -v oha >/dev/null; }; then
    echo "load tool: $(oha --version)"
  else
    echo "load tool: $( (wrk --version 2>&1 || true) | awk 'NR == 1 {print $1, $2}')"
  fi
  echo "settings: ${DURATION}s per scenario, $CONNS connections, $SEED_POSTS seeded posts, scenarios: ${ONLY:-all}"
  if [[ "$FB_DATABASE" == postgres ]]; then
    echo "ferrobase database: PostgreSQL $(psql "$PG_URL/postgres" -Atqc 'SHOW server_version') at $PG_URL (scratch database)"
  else
    echo "ferrobase database: SQLite (data dir)"
  fi
  echo "load before the run: $(cut -d' ' -f1-3 /proc/loadavg); busiest processes:"
  ps -eo pcpu=,etime=,comm= --sort=-pcpu | head -5 | sed 's/^/  /'
} | tee "$WORK/env.txt" >&2

# ---- shared by both halves ------------------------------------------------------------------
# The posts scenarios for one server. All of them: the shared bench.sh (seed + 5 scenarios), as
# before. A subset (ONLY=): the same seed script, then the picked ones in bench.sh's order and
# with its labels, each measured by scenario.sh. Arguments: OUT_DIR BASE PORT PID SEED_SCRIPT
# POSTS_PATH USERS_PATH AUTH_PATH AUTH_BODY LIST_QUERY FILTER_QUERY; bench.sh also reads the
# variables exported by the caller.
posts_phase() {
  local out="$1" base="$2" port="$3" pid="$4" seed="$5" posts="$6" users="$7" auth="$8" auth_body="$9"
  local list="${10}" filter="${11}" sample
  if ! want_any list view filter login create seed; then return 0; fi
  if [[ "$POSTS_VIA" == bench.sh ]]; then
    OUT_DIR="$out" "$PB_DIR/bench.sh" "$port" "$pid" >&2
    return 0
  fi
  log "seeding $POSTS_TO_SEED posts sequentially (1 keep-alive connection) ..."
  "$seed" --base "$base" --posts "$POSTS_TO_SEED" --posts-path "$posts" --users-path "$users" \
    --user-email bench@example.com --user-pass 'BenchPass123!' | tee "$out/seed.json" >&2 || die "seeding failed"
  sample="$(jq -r .sample_id "$out/seed.json")"
  if want list; then "$HERE/scenario.sh" "$out" "$pid" "(b) list perPage=20" list "$base$posts?$list"; fi
  if want view; then "$HERE/scenario.sh" "$out" "$pid" "(c) get by id" get "$base$posts/$sample"; fi
  if want filter; then "$HERE/scenario.sh" "$out" "$pid" "(d) filter+sort" filter "$base$posts?$filter"; fi
  if want login; then
    METHOD=POST BODY="$auth_body" "$HERE/scenario.sh" "$out" "$pid" "(e) auth-with-password" auth "$base$auth"
  fi
  if want create; then
    METHOD=POST BODY="$CREATE_BODY" "$HERE/scenario.sh" "$out" "$pid" "(a) create" create "$base$posts"
  fi
}
# One client creating records one after another on one keep-alive connection (after the
# 32-connection create, so both servers hold the same rows when it starts).
seqcreate_phase() {  # OUT_DIR PID URL
  if ! want seqcreate; then return 0; fi
  CONNS=1 WRK_THREADS=1 METHOD=POST BODY="$CREATE_BODY" \
    "$HERE/scenario.sh" "$1" "$2" "(s) single client sequential creates" seqcreate "$3"
}

# ---- 2. PocketBase -------------------------------------------------------------------------
mkdir -p "$WORK/pb/bench"
if [[ "$SKIP_PB" == 1 ]]; then
  log "PocketBase skipped (SKIP_PB=1)"
else
PB_PORT="$(free_port)"
log "PocketBase on 127.0.0.1:$PB_PORT (data in $WORK/pb)"
PB_PID="$("$PB_DIR/start.sh" "$WORK/pb" "$PB_PORT")"
PB_BASE="http://127.0.0.1:$PB_PORT"
if want notes; then
# Owner-rule list first (before bench.sh: its login scenario leaves Ferrobase with a large RSS
# that would inflate the peak RSS of whatever runs after it): `notes` (title, body, owner ->
# users, autodate created/updated, index on (owner, created)), SEED_NOTES rows owned by the bench
# user, list/view rule owner = the caller. The bench user is signed up here (seed.py's own
# sign-up then answers "exists", which it ignores).
curl -fsS -o /dev/null -X POST "$PB_BASE/api/collections/users/records" -H 'Content-Type: application/json' \
  -d '{"email":"bench@example.com","password":"BenchPass123!","passwordConfirm":"BenchPass123!"}' \
  || die "pocketbase: sign-up failed"
PB_SU_TOKEN="$(curl -fsS -X POST "$PB_BASE/api/collections/_superusers/auth-with-password" \
  -H 'Content-Type: application/json' \
  -d '{"identity":"admin@example.com","password":"AdminPass123!"}' | jq -r .token)"
curl -fsS -o "$WORK/pb/notes-collection.json" -X POST "$PB_BASE/api/collections" \
  -H "Authorization: $PB_SU_TOKEN" -H 'Content-Type: application/json' -d '{
    "name": "notes", "type": "base",
    "listRule": "owner = @request.auth.id", "viewRule": "owner = @request.auth.id",
    "createRule": "@request.auth.id != \"\" && @request.body.owner = @request.auth.id",
    "fields": [
      {"name": "title", "type": "text"},
      {"name": "body", "type": "text"},
      {"name": "owner", "type": "relation", "collectionId": "_pb_users_auth_", "maxSelect": 1, "required": true},
      {"name": "created", "type": "autodate", "onCreate": true, "onUpdate": false},
      {"name": "updated", "type": "autodate", "onCreate": true, "onUpdate": true}
    ],
    "indexes": ["CREATE INDEX idx_notes_owner_created ON notes (owner, created)"]}' \
  || die "pocketbase: creating notes failed"
pb_user_login() {
  curl -fsS -X POST "$PB_BASE/api/collections/users/auth-with-password" -H 'Content-Type: application/json' \
    -d '{"identity":"bench@example.com","password":"BenchPass123!"}'
}
PB_USER="$(pb_user_login)"
python3 "$HERE/seed-notes.py" --server pocketbase --base "$PB_BASE" --token "$(jq -r .token <<<"$PB_USER")" \
  --owner "$(jq -r .record.id <<<"$PB_USER")" --notes "$SEED_NOTES" | tee "$WORK/pb/bench/seed-notes.json" >&2
PB_NOTES_LIST="$PB_BASE/api/collections/notes/records?perPage=20"
"$HERE/scenario.sh" "$WORK/pb/bench" "$PB_PID" "(f) notes owner rule, signed in" notes-owner "$PB_NOTES_LIST" \
  "Authorization: $(pb_user_login | jq -r .token)"
curl -fsS -o /dev/null -X PATCH "$PB_BASE/api/collections/notes" -H "Authorization: $PB_SU_TOKEN" \
  -H 'Content-Type: application/json' -d '{"listRule": "", "viewRule": ""}' || die "pocketbase: opening notes failed"
"$HERE/scenario.sh" "$WORK/pb/bench" "$PB_PID" "(g) notes open rule, anonymous" notes-open "$PB_NOTES_LIST"
fi
posts_phase "$WORK/pb/bench" "$PB_BASE" "$PB_PORT" "$PB_PID" "$PB_DIR/seed.py" /api/collections/posts/records \
  /api/collections/users/records /api/collections/users/auth-with-password \
  '{"identity":"bench@example.com","password":"BenchPass123!"}' 'perPage=20' \
  'perPage=20&filter=%28views%3E500%20%26%26%20published%3Dtrue%29&sort=-views'
seqcreate_phase "$WORK/pb/bench" "$PB_PID" "$PB_BASE/api/collections/posts/records"
"$PB_DIR/stop.sh" "$WORK/pb"
PB_PID=""
fi

# ---- 3. Ferrobase --------------------------------------------------------------------------
FB_PORT="$(free_port)"
FB_BASE="http://127.0.0.1:$FB_PORT"
mkdir -p "$WORK/fb"
# SQLite: the file in the data dir. PostgreSQL: a database of its own, created for this run and
# dropped at the end (the data dir still holds local files).
FB_DB_ARGS=() FB_PG_DB=""
if [[ "$FB_DATABASE" == postgres ]]; then
  FB_PG_DB="fbbench_${STAMP,,}_$$"
  pg_create "$FB_PG_DB"
  FB_DB_ARGS=(--database-url "$PG_URL/$FB_PG_DB")
  log "Ferrobase on 127.0.0.1:$FB_PORT, PostgreSQL database $FB_PG_DB (data in $WORK/fb)"
else
  log "Ferrobase on 127.0.0.1:$FB_PORT, SQLite (data in $WORK/fb)"
fi
"$FERROBASE_BIN" admin create --email "$FB_ADMIN_EMAIL" --password "$FB_ADMIN_PASS" \
  --data-dir "$WORK/fb/data" "${FB_DB_ARGS[@]}" >"$WORK/fb/admin.log" 2>&1 ||
  { cat "$WORK/fb/admin.log" >&2; die "admin create failed"; }
# Login is limited to 10/min per IP+email by default: the login scenario needs it off.
FERROBASE_AUTH_RATE_LIMITS_ENABLED=false nohup "$FERROBASE_BIN" serve --data-dir "$WORK/fb/data" \
  --http "127.0.0.1:$FB_PORT" "${FB_DB_ARGS[@]}" >"$WORK/fb/ferrobase.log" 2>&1 &
FB_PID=$!
for _ in $(seq 1 100); do
  curl -fsS -o /dev/null --max-time 1 "$FB_BASE/v1/health" 2>/dev/null && break
  kill -0 "$FB_PID" 2>/dev/null || { cat "$WORK/fb/ferrobase.log" >&2; die "ferrobase exited"; }
  sleep 0.2
done
curl -fsS -o /dev/null "$FB_BASE/v1/health" || die "ferrobase health check timed out"
FB_TOKEN="$(curl -fsS -X POST "$FB_BASE/v1/admin/auth/login" -H 'Content-Type: application/json' \
  -d "$(jq -n --arg e "$FB_ADMIN_EMAIL" --arg p "$FB_ADMIN_PASS" '{email: $e, password: $p}')" | jq -r .token)"
# The schema is the whole set (absent collections are dropped): `posts` always, plus `notes`
# (the owner-rule list) with its list/view rule as given.
fb_apply() {  # [notes list/view rule]
  local posts='{"name": "posts",
    "fields": {"title": {"type": "text", "required": true}, "body": {"type": "text"},
               "views": {"type": "integer"}, "published": {"type": "bool"}},
    "rules": {"list": "true", "view": "true", "create": "true", "update": "true", "delete": "true"}}'
  local body
  if [[ -n "${1:-}" ]]; then
    body="$(jq -n --argjson posts "$posts" --arg rule "$1" '{collections: [$posts, {
      name: "notes",
      fields: {title: {type: "text"}, body: {type: "text"},
               owner: {type: "relation", collection: "users", required: true}},
      rules: {list: $rule, view: $rule, create: "@auth.id != \u0027\u0027 && @data.owner = @auth.id"},
      indexes: [{fields: ["owner", "created_at"]}]}]}')"
  else
    body="{\"collections\": [$posts]}"
  fi
  local code
  code="$(curl -sS -o "$WORK/fb/schema-apply.json" -w '%{http_code}' -X POST "$FB_BASE/v1/admin/schema/apply" \
    -H "Authorization: Bearer $FB_TOKEN" -H 'Content-Type: application/json' -d "$body")"
  [[ "$code" == 200 ]] || die "schema apply answered HTTP $code: $(cat "$WORK/fb/schema-apply.json")"
}
fb_apply
log "ferrobase healthy (pid $FB_PID), collection posts applied"

# Owner-rule list on `notes` first, as for PocketBase (same shape and data), and the cost of signing in:
# the same list with rule `true` anonymously (A), rule `true` with the token (B: token check
# only), rule `owner = @auth.id` with the token (C: token + rule), run A B C C B A so slow drift
# on the shared machine hits both sides alike. Tokens are fresh for each scenario (15 min TTL).
fb_user_login() {
  curl -fsS -X POST "$FB_BASE/v1/auth/login" -H 'Content-Type: application/json' \
    -d '{"email":"bench@example.com","password":"BenchPass123!"}'
}
mkdir -p "$WORK/fb/bench"
if want notes; then
curl -fsS -o /dev/null -X POST "$FB_BASE/v1/auth/signup" -H 'Content-Type: application/json' \
  -d '{"email":"bench@example.com","password":"BenchPass123!"}' || die "ferrobase: sign-up failed"
fb_apply "true"
FB_USER="$(fb_user_login)" || die "ferrobase: login as the bench user failed"
python3 "$HERE/seed-notes.py" --server ferrobase --base "$FB_BASE" --token "$(jq -r .access_token <<<"$FB_USER")" \
  --owner "$(jq -r .user.id <<<"$FB_USER")" --notes "$SEED_NOTES" | tee "$WORK/fb/bench/seed-notes.json" >&2 \
  || die "ferrobase: seeding notes failed"
FB_NOTES_LIST="$FB_BASE/v1/collections/notes/records?limit=20&count=true"
fb_notes() {  # label name [with-token]
  if [[ -n "${3:-}" ]]; then
    "$HERE/scenario.sh" "$WORK/fb/bench" "$FB_PID" "$1" "$2" "$FB_NOTES_LIST" \
      "Authorization: Bearer $(fb_user_login | jq -r .access_token)"
  else
    "$HERE/scenario.sh" "$WORK/fb/bench" "$FB_PID" "$1" "$2" "$FB_NOTES_LIST"
  fi
}
fb_notes "(g1) notes rule true, anonymous" notes-open-1
fb_notes "(t1) notes rule true, signed in" notes-open-token-1 token
fb_apply "owner = @auth.id"
fb_notes "(f1) notes owner rule, signed in" notes-owner-1 token
fb_notes "(f2) notes owner rule, signed in" notes-owner-2 token
fb_apply "true"
fb_notes "(t2) notes rule true, signed in" notes-open-token-2 token
fb_notes "(g2) notes rule true, anonymous" notes-open-2
# The same six without the count (NOTES_NOCOUNT=0 skips them): the page query alone, so the
# price of the token and the rule is not hidden behind (or blown up by) COUNT(*).
if [[ "${NOTES_NOCOUNT:-1}" != 0 ]]; then
  FB_NOTES_LIST="$FB_BASE/v1/collections/notes/records?limit=20"
  fb_notes "(g1n) notes rule true, anonymous, no count" notes-open-nc-1
  fb_notes "(t1n) notes rule true, signed in, no count" notes-open-token-nc-1 token
  fb_apply "owner = @auth.id"
  fb_notes "(f1n) notes owner rule, signed in, no count" notes-owner-nc-1 token
  fb_notes "(f2n) notes owner rule, signed in, no count" notes-owner-nc-2 token
  fb_apply "true"
  fb_notes "(t2n) notes rule true, signed in, no count" notes-open-token-nc-2 token
  fb_notes "(g2n) notes rule true, anonymous, no count" notes-open-nc-2
fi

fi

# GET /v1/health: the whole middleware stack, no database; the HTTP ceiling of this server.
if want health; then
  "$HERE/scenario.sh" "$WORK/fb/bench" "$FB_PID" "(h) GET /v1/health" health "$FB_BASE/v1/health"
fi

# Then the very same bench.sh, pointed at the /v1 routes (login: POST /v1/auth/login).
export POSTS_PATH=/v1/collections/posts/records \
  USERS_PATH=/v1/auth/signup \
  AUTH_PATH=/v1/auth/login \
  AUTH_BODY='{"email":"bench@example.com","password":"BenchPass123!"}' \
  LIST_QUERY='limit=20&count=true' \
  FILTER_QUERY='limit=20&filter=%28views%3E500%20%26%26%20published%3Dtrue%29&sort=-views' \
  HEALTH_PATH=/v1/health \
  COUNT_QUERY='limit=1&count=true' COUNT_JQ='.total' \
  SEED_SCRIPT="$HERE/seed-ferrobase.sh"
posts_phase "$WORK/fb/bench" "$FB_BASE" "$FB_PORT" "$FB_PID" "$SEED_SCRIPT" "$POSTS_PATH" "$USERS_PATH" \
  "$AUTH_PATH" "$AUTH_BODY" "$LIST_QUERY" "$FILTER_QUERY"
# The create again with a unique Idempotency-Key per request (claim + stored answer), right
# after the plain create so both run against the same table size.
if want createkey; then
  if command -v wrk >/dev/null; then
    LOAD_TOOL=wrk WRK_LUA="$HERE/idempotency-key.lua" METHOD=POST BODY="$CREATE_BODY" \
      "$HERE/scenario.sh" "$WORK/fb/bench" "$FB_PID" "(k) create, unique Idempotency-Key" createkey \
      "$FB_BASE$POSTS_PATH"
  else
    log "createkey needs wrk (per-request headers): skipped"
  fi
fi
seqcreate_phase "$WORK/fb/bench" "$FB_PID" "$FB_BASE$POSTS_PATH"

stop_pid "$FB_PID"
FB_PID=""
[[ -z "$FB_PG_DB" ]] || pg_drop "$FB_PG_DB"

# ---- 4. pgbench (FB_DATABASE=postgres) ------------------------------------------------------
# PostgreSQL's own ceiling for primary-key reads on this machine: `pgbench -S -M prepared`
# (select one row by key from pgbench_accounts, prepared statements), CONNS clients on 2
# threads, DURATION s, on a scratch database (scale 10: 1,000,000 accounts), with Ferrobase
# stopped. Same wait for a quiet machine as the scenarios; CPU is pgbench / whole machine.
if [[ "$FB_DATABASE" == postgres ]] && want pgbench; then
  PGB_DB="fbbench_pgbench_${STAMP,,}_$$"
  pg_create "$PGB_DB"
  log "pgbench -i -s 10 on scratch database $PGB_DB ..."
  pgbench -i -s 10 -q "$PG_URL/$PGB_DB" >"$WORK/fb/bench/pgbench-init.log" 2>&1 ||
    { cat "$WORK/fb/bench/pgbench-init.log" >&2; die "pgbench -i failed"; }
  TICK="$(getconf CLK_TCK)"
  busy_s() { awk -v t="$TICK" '$1 == "cpu" {print ($2 + $3 + $4 + $7 + $8) / t}' /proc/stat; }
  deadline=$((SECONDS + QUIET_MAX_WAIT))
  while :; do  # same rule as bench.sh: < QUIET_CORES (0.25) busy over 3 s, or give up
    a="$(busy_s)"; sleep 3; b="$(busy_s)"
    busy="$(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.2f", (b - a) / 3}')"
    awk -v x="$busy" -v q="${QUIET_CORES:-0.25}" 'BEGIN {exit !(x < q)}' && break
    (( SECONDS < deadline )) || { log "machine still busy ($busy cores), going ahead"; break; }
    log "machine busy ($busy cores), waiting ..."
  done
  PGB_THREADS=$((CONNS < 2 ? CONNS : 2))
  log "pgbench -S -c $CONNS -j $PGB_THREADS -M prepared -T $DURATION"
  times >"$WORK/fb/bench/.pgb-times0"
  t0="$(date +%s.%N)"; m0="$(busy_s)"
  pgbench -S -c "$CONNS" -j "$PGB_THREADS" -M prepared -T "$DURATION" "$PG_URL/$PGB_DB" \
    >"$WORK/fb/bench/pgbench.txt" 2>&1 || { cat "$WORK/fb/bench/pgbench.txt" >&2; die "pgbench failed"; }
  t1="$(date +%s.%N)"; m1="$(busy_s)"
  times >"$WORK/fb/bench/.pgb-times1"
  cpu_s() { awk 'NR == 2 {s = 0; for (i = 1; i <= 2; i++) {split($i, a, /[ms]/); s += a[1] * 60 + a[2]}; print s}' "$1"; }
  awk -v w="$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')" \
    -v c="$(awk -v a="$(cpu_s "$WORK/fb/bench/.pgb-times0")" -v b="$(cpu_s "$WORK/fb/bench/.pgb-times1")" 'BEGIN {print b - a}')" \
    -v m="$(awk -v a="$m0" -v b="$m1" 'BEGIN {print b - a}')" \
    'BEGIN {printf "- / %.2f / %.2f\n", c / w, m / w}' >"$WORK/fb/bench/pgbench.cpu"
  grep -E '^(tps|latency average|number of (transactions actually processed|failed))' "$WORK/fb/bench/pgbench.txt" >&2
  pg_drop "$PGB_DB"
fi

# ---- 5. one table --------------------------------------------------------------------------
# Rows of bench.sh (summary.md) and scenario.sh (summary-extra.md):
#   | (key) label | req/s | p50 | p99 | requests | non-2xx+errors | VmHWM | RSS after | cpu |
# plus seed.json (the seeding row) and pgbench.txt (the pgbench row).
SKIP_PB="$SKIP_PB" ONLY="$ONLY" FB_DATABASE="$FB_DATABASE" CONNS="$CONNS" \
python3 - "$WORK/pb/bench" "$WORK/fb/bench" <<'PY' | tee "$WORK/table.md"
import json, os, re, sys

ONLY = [x for x in os.environ.get("ONLY", "").split(",") if x]
SKIP_PB = os.environ.get("SKIP_PB") == "1"
ON_PG = os.environ.get("FB_DATABASE") == "postgres"
CONNS = os.environ.get("CONNS", "32")

def want(name):
    return not ONLY or name in ONLY

def rows(d):
    out = {}
    for name in ("summary.md", "summary-extra.md"):
        if not os.path.exists(f"{d}/{name}"):
            continue
        for line in open(f"{d}/{name}"):
            c = [x.strip() for x in line.strip().strip("|").split("|")]
            m = re.match(r"\((\w+)\)", c[0]) if len(c) == 9 else None
            if m:
                out[m.group(1)] = dict(rps=float(c[1]), p50=float(c[2]), p99=float(c[3]),
                                       total=int(c[4]), bad=int(c[5]), hwm=c[6], cpu=c[8])
    seed = json.load(open(f"{d}/seed.json")) if os.path.exists(f"{d}/seed.json") else None
    return out, seed

def pgbench(d):
    """tps, latency average, transactions, failed, cpu from pgbench's output, or None."""
    if not os.path.exists(f"{d}/pgbench.txt"):
        return None
    text = open(f"{d}/pgbench.txt").read()
    def num(pattern):
        m = re.search(pattern, text, re.M)
        return float(m.group(1)) if m else None
    cpu = open(f"{d}/pgbench.cpu").read().strip() if os.path.exists(f"{d}/pgbench.cpu") else "?"
    return dict(tps=num(r"^tps = ([\d.]+) \(without initial connection time\)"),
                lat=num(r"^latency average = ([\d.]+) ms"),
                total=num(r"^number of transactions actually processed: (\d+)"),
                failed=num(r"^number of failed transactions: (\d+)") or 0, cpu=cpu)

pb, pb_seed = ({}, None) if SKIP_PB else rows(sys.argv[1])
fb, fb_seed = rows(sys.argv[2])
pgb = pgbench(sys.argv[2])
# (ONLY name, PocketBase key, Ferrobase key, label)
order = [("list", "b", "b", "list 20 (with total count)"), ("view", "c", "c", "view by id"),
         ("filter", "d", "d", "filter + sort (no index)"),
         ("notes", "f", "f1", "list 20 signed in, owner rule (notes, with count)"),
         ("login", "e", "e", "login (PB bcrypt-10, FB argon2id 19 MiB/t=2)"), ("create", "a", "a", "create"),
         ("createkey", None, "k", "create, unique Idempotency-Key per request (Ferrobase only)"),
         ("seqcreate", "s", "s", "single client sequential creates (1 connection)")]

def ratio(num, den):
    return f"{num / den:.2f}×" if num and den else "–"

def f(x, nd=1):
    return f"{x:,.{nd}f}"

def cells(r, skipped):
    """req/s, p50, p99, peak RSS of one side: '-' when that side was not run, 'missing' when it
    ran but left no row."""
    if skipped:
        return ["-"] * 4
    if not r:
        return ["missing"] + [""] * 3
    return [f(r["rps"], 0), f(r["p50"]), f(r["p99"]), r["hwm"]]

db = "PostgreSQL" if ON_PG else "SQLite"
print(f"Ferrobase on {db}." + (" PocketBase skipped (SKIP_PB=1)." if SKIP_PB else "")
      + (f" Scenarios: {', '.join(ONLY)}." if ONLY else ""))
print()
print("| scenario | PocketBase req/s | Ferrobase req/s | req/s ratio | PB p50 ms | FB p50 ms | p50 ratio "
      "| PB p99 ms | FB p99 ms | p99 ratio | PB peak RSS MiB | FB peak RSS MiB | memory ratio |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
notes = []
for name, kp, kf, label in order:
    if not want(name):
        continue
    p, q = pb.get(kp), fb.get(kf)
    for who, r in (("PocketBase", p), ("Ferrobase", q)):
        if r and r["bad"]:
            notes.append(f"- {who} {label}: {r['bad']} of {r['total']} responses were non-2xx or errors")
    pc, qc = cells(p, SKIP_PB or kp is None), cells(q, False)
    if p and q:
        rr = [ratio(q["rps"], p["rps"]), ratio(p["p50"], q["p50"]), ratio(p["p99"], q["p99"]),
              ratio(float(p["hwm"]), float(q["hwm"]))]
    else:
        rr = ["-" if SKIP_PB else "–"] * 4
    print(f"| {label} | {pc[0]} | {qc[0]} | {rr[0]} | {pc[1]} | {qc[1]} | {rr[1]} "
          f"| {pc[2]} | {qc[2]} | {rr[2]} | {pc[3]} | {qc[3]} | {rr[3]} |")
if want("seed"):
    ps = "-" if SKIP_PB else (f(pb_seed["inserts_per_sec"] or 0, 0) if pb_seed else "missing")
    qs = f(fb_seed["inserts_per_sec"] or 0, 0) if fb_seed else "missing"
    r = ratio(fb_seed["inserts_per_sec"], pb_seed["inserts_per_sec"]) if pb_seed and fb_seed else "-"
    n = (fb_seed or pb_seed or {}).get("posts_created", 0)
    print(f"| seed {n:,} posts (sequential creates, 1 connection) | {ps} | {qs} | {r} | | | | | | | | | |")
# Reference rows: the machine's limits, measured on the Ferrobase side only.
h = fb.get("h")
if want("health"):
    qc = cells(h, False)
    print(f"| reference: GET /v1/health (all middleware, no database) | - | {qc[0]} | - | - | {qc[1]} | - "
          f"| - | {qc[2]} | - | - | {qc[3]} | - |")
if ON_PG and want("pgbench"):
    tps = f(pgb["tps"], 0) if pgb and pgb["tps"] else "missing"
    print(f"| reference: pgbench -S -M prepared, {CONNS} clients (tps of PostgreSQL alone, Ferrobase stopped) "
          f"| - | {tps} | - | - | | - | - | | - | - | | - |")
print()
print("Ratios: req/s = Ferrobase / PocketBase; p50, p99 and memory = PocketBase / Ferrobase (> 1× is better for Ferrobase).")
if ON_PG:
    print("Ferrobase's peak RSS and CPU are the ferrobase process only, not the PostgreSQL server's.")
ck, cp = fb.get("k"), fb.get("a")
if ck and cp:
    print(f"- create with a unique Idempotency-Key: {ck['rps'] / cp['rps'] * 100:.0f} % of create "
          f"({f(ck['rps'], 0)} of {f(cp['rps'], 0)} req/s; p50 {f(ck['p50'], 2)} vs {f(cp['p50'], 2)} ms)")
view = fb.get("c")
if view and h:
    print(f"- view by id as % of /v1/health: {view['rps'] / h['rps'] * 100:.0f} % "
          f"({f(view['rps'], 0)} of {f(h['rps'], 0)} req/s)")
if view and pgb and pgb["tps"]:
    print(f"- view by id as % of pgbench -S: {view['rps'] / pgb['tps'] * 100:.0f} % "
          f"({f(view['rps'], 0)} req/s of {f(pgb['tps'], 0)} tps)")
if pgb and pgb["tps"]:
    print(f"- pgbench -S: {f(pgb['tps'], 0)} tps, latency average {pgb['lat']} ms, "
          f"{int(pgb['total'] or 0):,} transactions, {int(pgb['failed'])} failed")
    if pgb["failed"]:
        notes.append(f"- pgbench: {int(pgb['failed'])} failed transactions")
print()
sides = [("Ferrobase", fb, [("g1", "rule true, anonymous"), ("t1", "rule true, signed in"),
                             ("f1", "owner rule, signed in"), ("f2", "owner rule, signed in"),
                             ("t2", "rule true, signed in"), ("g2", "rule true, anonymous"),
                             ("g1n", "rule true, anonymous, no count"), ("t1n", "rule true, signed in, no count"),
                             ("f1n", "owner rule, signed in, no count"), ("f2n", "owner rule, signed in, no count"),
                             ("t2n", "rule true, signed in, no count"), ("g2n", "rule true, anonymous, no count")]),
         ("PocketBase", pb, [("g", "rule \"\" (anyone), anonymous"), ("f", "owner rule, signed in")])]
def mean(d, ks, m):
    v = [d[k][m] for k in ks if k in d]
    return sum(v) / len(v) if v else None
def overhead(d, base, test):
    out = []
    for m, better_high in (("rps", True), ("p50", False), ("p99", False)):
        b, t = mean(d, base, m), mean(d, test, m)
        if b and t:
            # positive = slower when signed in
            out.append(f"{m} {((b / t - 1) if better_high else (t / b - 1)) * 100:+.1f} %")
    return ", ".join(out) or "-"
if want("notes"):
    print("Cost of signing in on the notes list (same rows, limit 20, with count unless marked):")
    print()
    print("| server | run | req/s | p50 ms | p99 ms | peak RSS MiB | non-2xx |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for who, d, ks in sides:
        for k, label in ks:
            if k in d:
                r = d[k]
                print(f"| {who} | ({k}) {label} | {f(r['rps'], 0)} | {f(r['p50'], 2)} | {f(r['p99'], 2)} | {r['hwm']} | {r['bad']} |")
    print()
    print(f"- Ferrobase, token check only (t vs g, means of both runs): {overhead(fb, ['g1', 'g2'], ['t1', 't2'])}")
    print(f"- Ferrobase, token + owner rule (f vs g, means of both runs): {overhead(fb, ['g1', 'g2'], ['f1', 'f2'])}")
    if "g1n" in fb:
        print(f"- Ferrobase, no count, token check only (tn vs gn): {overhead(fb, ['g1n', 'g2n'], ['t1n', 't2n'])}")
        print(f"- Ferrobase, no count, token + owner rule (fn vs gn): {overhead(fb, ['g1n', 'g2n'], ['f1n', 'f2n'])}")
    if not SKIP_PB:
        print(f"- PocketBase, token + owner rule (f vs g, one run each): {overhead(pb, ['g'], ['f'])}")
    print("  (overhead > 0 = the signed-in list is slower: lower req/s or higher latency)")
    print()
print("CPU cores used during each scenario (server / load tool / whole machine):")
for name, kp, kf, label in order:
    if kp in pb or kf in fb:
        pc = pb[kp]["cpu"] if kp in pb else "-"
        qc = fb[kf]["cpu"] if kf in fb else "-"
        print(f"- {label}: PocketBase {pc}; Ferrobase {qc}")
if h:
    print(f"- GET /v1/health: Ferrobase {h['cpu']}")
if pgb:
    print(f"- pgbench -S (- / pgbench / whole machine; PostgreSQL is most of the rest): {pgb['cpu']}")
if want("notes"):
    for who, d, ks in sides:
        for k, label in ks:
            if k in d:
                print(f"- {who} ({k}) notes {label}: {d[k]['cpu']}")
for n in notes:
    print(n)
PY
log "raw output in $WORK"
