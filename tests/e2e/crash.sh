#!/usr/bin/env bash
# kill -9 (issue #8), on SQLite and on PostgreSQL (when FERROBASE_TEST_PG_URL is reachable;
# required under FERROBASE_REQUIRE_PG=1), files on the local backend, Python standard library
# only:
# - during fan-out (tests/e2e/crash/fanout.py): a subscriber and a writer run against a server
#   that gets SIGKILL mid-write; after a restart on the same data the subscriber resumes with
#   Last-Event-ID and must see every acknowledged create exactly once, in order;
# - during uploads (tests/e2e/crash/uploads.py): raw, multipart and resumable uploads are cut
#   off by SIGKILL; after a restart every acknowledged file is intact, the resumable upload
#   resumes, and storage ends up holding exactly the files records reference;
# - during a push (tests/e2e/crash/push.py): 20,000 devices, the real APNs and FCM plugins
#   against fake-push (20 ms latency); SIGKILL mid-fan-out and mid-send; after a restart every
#   device has exactly one delivery, all sent, and only sends in flight at the kill went twice.
# CRASH_ONLY="push" (space-separated: fanout uploads push) runs a subset.
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/e2e/sdk/lib.sh
export FERROBASE_AUTH_RATE_LIMITS_ENABLED=false
PG_URL="${FERROBASE_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/test}"
cargo build -q -p ferrobase -p ferrobase-push-testkit || fail "cargo build"
FAKE_PUSH="$PWD/target/debug/fake-push"

scenario() {  # label, database URL (empty: SQLite), client (fanout | uploads | push)
  local label="$1" dburl="$2" client="$3" work port base pid admin token schema fake_pid=""
  local db_args=()
  [[ -n "$dburl" ]] && db_args+=(--database-url "$dburl")
  work=$(mktemp -d)
  local serve_args=("${db_args[@]}")
  if [[ "$client" == push ]]; then
    "$FAKE_PUSH" --dir "$work/fake" --latency-ms 20 >"$work/fake.json" 2>"$work/fake.log" &
    fake_pid=$!
    for _ in $(seq 1 100); do [[ -s "$work/fake.json" ]] && break; sleep 0.1; done
    [[ -s "$work/fake.json" ]] || { cat "$work/fake.log"; fail "$label: fake-push did not start"; }
    serve_args+=(--config "$work/fake/server.toml")
  fi
  port=$(( 20000 + RANDOM % 20000 ))
  base="http://127.0.0.1:$port"
  "$BIN" admin create --email "$ADMIN_EMAIL" --password "$ADMIN_PASSWORD" --data-dir "$work/data" "${db_args[@]}" >/dev/null
  "$BIN" serve --http "127.0.0.1:$port" --data-dir "$work/data" "${serve_args[@]}" >"$work/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do curl -fs "$base/v1/ready" >/dev/null && break; sleep 0.1; done
  curl -fs "$base/v1/ready" >/dev/null || { cat "$work/server.log"; kill "$pid"; fail "$label: server not ready"; }
  admin=$(curl -fs --json "{\"email\":\"$ADMIN_EMAIL\",\"password\":\"$ADMIN_PASSWORD\"}" "$base/v1/admin/auth/login" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  case "$client" in
    fanout) schema='{"collections":[{"name":"feed","fields":{"owner":{"type":"text"},"n":{"type":"integer"}},"rules":{"list":"@auth.id != \"\"","view":"@auth.id != \"\"","create":"@auth.id != \"\""}}]}' ;;
    push) schema='' ;;
    uploads) schema='{"collections":[{"name":"albums","fields":{"title":{"type":"text"},"cover":{"type":"file","max_size":31457280,"mime":["image/png"]}},"rules":{"list":"@auth.id != \"\"","view":"@auth.id != \"\"","create":"@auth.id != \"\"","update":"@auth.id != \"\""}}]}' ;;
  esac
  [[ -z "$schema" ]] || curl -fs -o /dev/null -H "authorization: Bearer $admin" --json "$schema" \
    "$base/v1/admin/schema/apply" || { kill "$pid"; fail "$label: schema apply"; }
  token=$(curl -fs --json '{"email":"crash@example.com","password":"a long password"}' "$base/v1/auth/signup" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  # The client kills this server, starts it again and stops the new one.
  echo "-- $label: kill -9 during $client"
  # push sends as the admin; the others act as a signed-up user.
  [[ "$client" == push ]] && token="$admin"
  FAKE_PUSH_JSON="$work/fake.json" python3 "tests/e2e/crash/$client.py" "$BIN" "$work/data" "$port" "$pid" "$token" "${serve_args[@]}" \
    || { tail -n 30 "$work/server.log"; tail -n 30 "$work/restart.log" 2>/dev/null; [[ -n "$fake_pid" ]] && kill "$fake_pid"; fail "$label: kill -9 during $client"; }
  wait "$pid" 2>/dev/null || true
  if [[ -n "$fake_pid" ]]; then kill "$fake_pid"; wait "$fake_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}

passed=0
for client in ${CRASH_ONLY:-fanout uploads push}; do
  scenario sqlite "" "$client"
  passed=$((passed + 1))
  if psql "$PG_URL" -qtAc 'select 1' >/dev/null 2>&1; then
    db="fb_crash_$RANDOM$RANDOM"
    psql "$PG_URL" -qc "CREATE DATABASE $db" >/dev/null
    scenario postgres "${PG_URL%/*}/$db" "$client"
    psql "$PG_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
    passed=$((passed + 1))
  elif [[ "${FERROBASE_REQUIRE_PG:-}" == 1 ]]; then
    fail "PostgreSQL required but not reachable"
  else
    echo "SKIPPED: PostgreSQL kill -9 during $client (not reachable)"
  fi
done
echo "$passed passed, 0 failed"
