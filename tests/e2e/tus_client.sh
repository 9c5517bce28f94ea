#!/usr/bin/env bash
# Resumable uploads with an existing tus client (tuspy from PyPI, pinned in lib.sh): an upload
# interrupted after a few chunks is resumed by a new client from the server's offset, attached
# to a record, and downloaded byte-identical.
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/e2e/sdk/lib.sh
ensure_venv
export FERROBASE_AUTH_RATE_LIMITS_ENABLED=false
start_server
"$VENV/bin/python" tests/e2e/tus/client.py "$BASE" "$(admin_token)" || { tail -n 30 "$WORK/server.log"; fail "tuspy client"; }
