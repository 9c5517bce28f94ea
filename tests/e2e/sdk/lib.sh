# Shared by tests/e2e/sdk_client.sh and tests/e2e/schemathesis.sh: a Python venv with pinned
# tools (PyPI), the debug binary, and a fresh server with an admin account.
# Source it from the repository root.

FB_PY_TOOLS=("openapi-python-client==0.29.1" "schemathesis==4.32.5" "python-dateutil==2.9.0.post0" "tuspy==1.1.0")
VENV="${FB_E2E_VENV:-$PWD/target/e2e-venv}"
BIN="$PWD/target/debug/ferrobase"
ADMIN_EMAIL="admin@example.com"
ADMIN_PASSWORD="change-me-now"

fail() { echo "FAIL: $*"; exit 1; }

# Creates (once) the venv in target/ (gitignored) and installs the pinned tools.
ensure_venv() {
  if [[ ! -x "$VENV/bin/python" ]]; then
    python3 -m venv "$VENV" || fail "python3 -m venv failed (apt-get install python3-venv)"
  fi
  local stamp="$VENV/.fb-tools"
  if [[ "$(cat "$stamp" 2>/dev/null)" != "${FB_PY_TOOLS[*]}" ]]; then
    "$VENV/bin/pip" install -q --disable-pip-version-check "${FB_PY_TOOLS[@]}" || fail "pip install failed"
    echo "${FB_PY_TOOLS[*]}" > "$stamp"
  fi
}

# Starts a server on a fresh SQLite data dir; sets WORK, BASE, SERVER_PID.
start_server() {
  cargo build -q -p ferrobase || fail "cargo build"
  WORK=$(mktemp -d)
  local port=$(( 20000 + RANDOM % 20000 ))
  BASE="http://127.0.0.1:$port"
  "$BIN" admin create --email "$ADMIN_EMAIL" --password "$ADMIN_PASSWORD" --data-dir "$WORK/data" >/dev/null
  "$BIN" serve --http "127.0.0.1:$port" --data-dir "$WORK/data" >"$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  trap stop_server EXIT
  for _ in $(seq 1 100); do curl -fs "$BASE/v1/health" >/dev/null && break; sleep 0.1; done
  curl -fs "$BASE/v1/ready" >/dev/null || { cat "$WORK/server.log"; fail "server not ready"; }
}

stop_server() {
  if [[ -n "${SERVER_PID:-}" ]]; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
  fi
  if [[ -n "${WORK:-}" && -z "${KEEP_WORK:-}" ]]; then rm -rf "$WORK"; fi
}

# Prints a fresh admin token.
admin_token() {
  curl -fs --json "{\"email\":\"$ADMIN_EMAIL\",\"password\":\"$ADMIN_PASSWORD\"}" "$BASE/v1/admin/auth/login" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'
}

# Applies examples/photoshare with the CLI (plan must show changes, then none after apply).
apply_example() {
  local token="$1"
  local rc
  set +e; FERROBASE_TOKEN="$token" "$BIN" plan --project examples/photoshare --server "$BASE" --detailed-exitcode >"$WORK/plan.txt"; rc=$?; set -e
  [[ $rc == 4 ]] || { cat "$WORK/plan.txt"; fail "plan of examples/photoshare gave exit $rc, want 4"; }
  FERROBASE_TOKEN="$token" "$BIN" apply --project examples/photoshare --server "$BASE" --yes >/dev/null \
    || fail "apply of examples/photoshare"
  set +e; FERROBASE_TOKEN="$token" "$BIN" plan --project examples/photoshare --server "$BASE" --detailed-exitcode >/dev/null; rc=$?; set -e
  [[ $rc == 0 ]] || fail "plan after apply gave exit $rc, want 0"
}
