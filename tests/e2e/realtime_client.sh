#!/usr/bin/env bash
# Realtime wire format against a standard EventSource client (npm `eventsource`, pinned in
# tests/e2e/sse/package-lock.json): ready first, events in commit order, and the library's own
# reconnect with Last-Event-ID after a TCP proxy cuts the stream mid-way while writes go on.
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/e2e/sdk/lib.sh
SSE="$PWD/tests/e2e/sse"
command -v node >/dev/null && command -v npm >/dev/null \
  || (apt-get update -qq && apt-get install -y -qq nodejs npm) || fail "Node.js and npm are needed"
(cd "$SSE" && npm ci --no-audit --no-fund --loglevel=error) || fail "npm ci"
export FERROBASE_AUTH_RATE_LIMITS_ENABLED=false
start_server
node "$SSE/client.mjs" "$BASE" "$(admin_token)" || { tail -n 30 "$WORK/server.log"; fail "EventSource client"; }
