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
#   3. PocketBase: fresh data dir on a free loopback port (start.sh), the notes scenarios (below),
#      then seed + 5 scenarios (bench.sh), stop (stop.sh);
#   4. Ferrobase: fresh data dir on a free loopback port, admin account, `posts` collection with
#      open rules (schema apply), then the very same bench.sh (same seed.py, same load tool, same
#      settings) pointed at the /v1 routes, stop. Rate limits are off (FERROBASE_AUTH_RATE_LIMITS_ENABLED).
#   5. prints ONE markdown table: req/s, p50, p99, peak RSS for both, and the ratios
#      (throughput: ours / PocketBase; latency and memory: PocketBase / ours, so > 1 is better).
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
# the count (NOTES_NOCOUNT=0 skips those).
#
# Environment: FERROBASE_BIN, FERROBASE_REV, CARGO_TARGET_DIR, DURATION (10 s per scenario),
# CONNS (32), SEED_POSTS (10000), SEED_NOTES (10000), NOTES_NOCOUNT (1),
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
SEED_NOTES="${SEED_NOTES:-10000}"
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
  # With FERROBASE_BIN the binary may predate HEAD: print its build time too.
  echo "ferrobase: $("$FERROBASE_BIN" --version 2>/dev/null || echo '?') (repo HEAD $(git -C "$REPO" rev-parse --short "${FERROBASE_REV:-HEAD}" 2>/dev/null || echo '?')${FERROBASE_REV:+, built from that commit}; binary $FERROBASE_BIN built $(date -u -r "$FERROBASE_BIN" '+%Y-%m-%d %H:%M UTC'))"
  if [[ "$LOAD_TOOL" == oha ]] || { [[ "$LOAD_TOOL" == auto ]] && command -v oha >/dev/null; }; then
    echo "load tool: $(oha --version)"
  else
    echo "load tool: $( (wrk --version 2>&1 || true) | awk 'NR == 1 {print $1, $2}')"
  fi
  echo "settings: ${DURATION}s per scenario, $CONNS connections, $SEED_POSTS seeded posts"
  echo "load before the run: $(cut -d' ' -f1-3 /proc/loadavg); busiest processes:"
  ps -eo pcpu=,etime=,comm= --sort=-pcpu | head -5 | sed 's/^/  /'
} | tee "$WORK/env.txt" >&2

# ---- 2. PocketBase -------------------------------------------------------------------------
PB_PORT="$(free_port)"
log "PocketBase on 127.0.0.1:$PB_PORT (data in $WORK/pb)"
PB_PID="$("$PB_DIR/start.sh" "$WORK/pb" "$PB_PORT")"
# Owner-rule list first (before bench.sh: its login scenario leaves Ferrobase with a large RSS
# that would inflate the peak RSS of whatever runs after it): `notes` (title, body, owner ->
# users, autodate created/updated, index on (owner, created)), SEED_NOTES rows owned by the bench
# user, list/view rule owner = the caller. The bench user is signed up here (seed.py's own
# sign-up then answers "exists", which it ignores).
PB_BASE="http://127.0.0.1:$PB_PORT"
mkdir -p "$WORK/pb/bench"
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
# Login is limited to 10/min per IP+email by default: the login scenario needs it off.
FERROBASE_AUTH_RATE_LIMITS_ENABLED=false nohup "$FERROBASE_BIN" serve --data-dir "$WORK/fb/data" --http "127.0.0.1:$FB_PORT" \
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

# Then the very same bench.sh, pointed at the /v1 routes (login: POST /v1/auth/login).
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
# Rows of bench.sh (summary.md) and scenario.sh (summary-extra.md):
#   | (key) label | req/s | p50 | p99 | requests | non-2xx+errors | VmHWM | RSS after | cpu |
python3 - "$WORK/pb/bench" "$WORK/fb/bench" <<'PY' | tee "$WORK/table.md"
import json, os, re, sys

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
    seed = json.load(open(f"{d}/seed.json"))
    return out, seed

pb, pb_seed = rows(sys.argv[1])
fb, fb_seed = rows(sys.argv[2])
# (PocketBase key, Ferrobase key, label)
order = [("b", "b", "list 20 (with total count)"), ("c", "c", "view by id"),
         ("d", "d", "filter + sort (no index)"),
         ("f", "f1", "list 20 signed in, owner rule (notes, with count)"),
         ("e", "e", "login (PB bcrypt-10, FB argon2id 19 MiB/t=2)"), ("a", "a", "create")]

def ratio(num, den):
    return f"{num / den:.2f}×" if num and den else "–"

def f(x, nd=1):
    return f"{x:,.{nd}f}"

print("| scenario | PocketBase req/s | Ferrobase req/s | req/s ratio | PB p50 ms | FB p50 ms | p50 ratio "
      "| PB p99 ms | FB p99 ms | p99 ratio | PB peak RSS MiB | FB peak RSS MiB | memory ratio |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
notes = []
for kp, kf, name in order:
    p, q = pb.get(kp), fb.get(kf)
    if not p or not q:
        print(f"| {name} | missing | | | | | | | | | | | |")
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
print()
print("Cost of signing in on the notes list (same 10,000 rows, limit 20, with count unless marked):")
print()
print("| server | run | req/s | p50 ms | p99 ms | peak RSS MiB | non-2xx |")
print("|---|---|---:|---:|---:|---:|---:|")
sides = [("Ferrobase", fb, [("g1", "rule true, anonymous"), ("t1", "rule true, signed in"),
                             ("f1", "owner rule, signed in"), ("f2", "owner rule, signed in"),
                             ("t2", "rule true, signed in"), ("g2", "rule true, anonymous"),
                             ("g1n", "rule true, anonymous, no count"), ("t1n", "rule true, signed in, no count"),
                             ("f1n", "owner rule, signed in, no count"), ("f2n", "owner rule, signed in, no count"),
                             ("t2n", "rule true, signed in, no count"), ("g2n", "rule true, anonymous, no count")]),
         ("PocketBase", pb, [("g", "rule \"\" (anyone), anonymous"), ("f", "owner rule, signed in")])]
for who, d, ks in sides:
    for k, label in ks:
        if k in d:
            r = d[k]
            print(f"| {who} | ({k}) {label} | {f(r['rps'], 0)} | {f(r['p50'], 2)} | {f(r['p99'], 2)} | {r['hwm']} | {r['bad']} |")
print()
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
    return ", ".join(out)
print(f"- Ferrobase, token check only (t vs g, means of both runs): {overhead(fb, ['g1', 'g2'], ['t1', 't2'])}")
print(f"- Ferrobase, token + owner rule (f vs g, means of both runs): {overhead(fb, ['g1', 'g2'], ['f1', 'f2'])}")
if "g1n" in fb:
    print(f"- Ferrobase, no count, token check only (tn vs gn): {overhead(fb, ['g1n', 'g2n'], ['t1n', 't2n'])}")
    print(f"- Ferrobase, no count, token + owner rule (fn vs gn): {overhead(fb, ['g1n', 'g2n'], ['f1n', 'f2n'])}")
print(f"- PocketBase, token + owner rule (f vs g, one run each): {overhead(pb, ['g'], ['f'])}")
print("  (overhead > 0 = the signed-in list is slower: lower req/s or higher latency)")
print()
print("CPU cores used during each scenario (server / load tool / whole machine):")
for kp, kf, name in order:
    if kp in pb and kf in fb:
        print(f"- {name}: PocketBase {pb[kp]['cpu']}; Ferrobase {fb[kf]['cpu']}")
for who, d, ks in sides:
    for k, label in ks:
        if k in d:
            print(f"- {who} ({k}) notes {label}: {d[k]['cpu']}")
for n in notes:
    print(n)
PY
log "raw output in $WORK"
