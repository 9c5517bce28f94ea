#!/usr/bin/env bash
# A client generated from the OpenAPI document by a standard generator (openapi-python-client,
# from PyPI) drives an end-to-end scenario against a real server: admin login, plan/apply of
# examples/photoshare, create, list with a filter, page, update with If-Match, batch, delete;
# app users: sign up, log in, refresh (rotation, reuse detection), owner rules, logout.
# The generated code lives in a temp dir (never committed). Prints `N passed, 0 failed` last.
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/e2e/sdk/lib.sh

ensure_venv
start_server

echo "-- generate the client from the typed document of examples/photoshare"
"$BIN" openapi --project examples/photoshare > "$WORK/openapi.json"
cat > "$WORK/generator.yml" <<'YML'
project_name_override: ferrobase-client
package_name_override: fb_client
YML
"$VENV/bin/openapi-python-client" generate --path "$WORK/openapi.json" --config "$WORK/generator.yml" \
  --output-path "$WORK/client/fb_client" --meta none >"$WORK/generate.log" 2>&1 \
  || { cat "$WORK/generate.log"; fail "openapi-python-client generate"; }

echo "-- the CLI sees the example project as pending"
set +e; FERROBASE_TOKEN="$(admin_token)" "$BIN" plan --project examples/photoshare --server "$BASE" --detailed-exitcode >/dev/null; rc=$?; set -e
[[ $rc == 4 ]] || fail "plan gave exit $rc, want 4"

echo "-- scenario"
set +e
PYTHONPATH="$WORK/client" "$VENV/bin/python" tests/e2e/sdk/scenario.py "$BASE" examples/photoshare "$ADMIN_EMAIL" "$ADMIN_PASSWORD" | tee "$WORK/scenario.log"
rc=${PIPESTATUS[0]}
set -e
[[ $rc == 0 ]] || { tail -n 30 "$WORK/server.log"; fail "scenario"; }

echo "-- after the client's apply, the CLI sees no changes, and the served document is the CLI's"
set +e; FERROBASE_TOKEN="$(admin_token)" "$BIN" plan --project examples/photoshare --server "$BASE" --detailed-exitcode >/dev/null; rc=$?; set -e
[[ $rc == 0 ]] || fail "plan after apply gave exit $rc, want 0"
curl -fs "$BASE/v1/openapi.json" | python3 -c '
import json, sys
served = json.load(sys.stdin)
cli = json.load(open(sys.argv[1]))
sys.exit(0 if served == cli else "GET /v1/openapi.json differs from ferrobase openapi --project")' "$WORK/openapi.json"
if grep -q "request failed" "$WORK/server.log"; then grep "request failed" "$WORK/server.log"; fail "server logged a 5xx"; fi
# The scenario's own summary line stays the last line of the output.
tail -n 1 "$WORK/scenario.log"
