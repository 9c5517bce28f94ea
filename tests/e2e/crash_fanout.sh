#!/usr/bin/env bash
# kill -9 during fan-out (issue #8): a subscriber and a writer run against a server that gets
# SIGKILL mid-stream; after a restart on the same data dir the subscriber resumes with
# Last-Event-ID and must see every acknowledged create exactly once, in order
# (tests/e2e/crash/fanout.py, Python standard library only).
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/e2e/sdk/lib.sh
export FERROBASE_AUTH_RATE_LIMITS_ENABLED=false
start_server
ADMIN=$(admin_token)
curl -fs -o /dev/null -H "authorization: Bearer $ADMIN" --json '{"collections":[{"name":"feed","fields":{"owner":{"type":"text"},"n":{"type":"integer"}},"rules":{"list":"@auth.id != \"\"","view":"@auth.id != \"\"","create":"@auth.id != \"\""}}]}' \
  "$BASE/v1/admin/schema/apply" || fail "schema apply"
TOKEN=$(curl -fs --json '{"email":"crash@example.com","password":"a long password"}' "$BASE/v1/auth/signup" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])') || fail "signup"
PORT="${BASE##*:}"
PID="$SERVER_PID"
SERVER_PID=""  # killed and restarted by the client, which also stops the new one
python3 tests/e2e/crash/fanout.py "$BIN" "$WORK/data" "$PORT" "$PID" "$TOKEN" || fail "kill -9 during fan-out"
wait "$PID" 2>/dev/null || true
echo "1 passed, 0 failed"
