#!/usr/bin/env bash
# The README quick start, end to end with the real binary: admin create, init, plan, apply,
# records over HTTP with curl, then kill -9 and restart to show acknowledged writes survive.
# Runs on SQLite, and on PostgreSQL when FERROBASE_TEST_PG_URL is reachable.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build -q -p ferrobase
BIN="$PWD/target/debug/ferrobase"
PG_URL="${FERROBASE_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/test}"

fail() { echo "FAIL: $*"; exit 1; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {'d': d}))" "$1"; }

run_scenario() {
  local label="$1" dburl="$2"
  local work; work=$(mktemp -d)
  local port=$(( 20000 + RANDOM % 20000 ))
  local base="http://127.0.0.1:$port"
  export XDG_CONFIG_HOME="$work/config"
  local db_args=(--data-dir "$work/data")
  [[ -n "$dburl" ]] && db_args+=(--database-url "$dburl")
  echo "-- $label: admin create (offline)"
  "$BIN" admin create --email admin@example.com --password 'change-me-now' "${db_args[@]}"
  "$BIN" admin create --email admin@example.com --password 'change-me-now' "${db_args[@]}" && fail "duplicate admin accepted"
  "$BIN" admin create --email admin@example.com --password 'change-me-now' --if-not-exists "${db_args[@]}"
  echo "-- $label: serve"
  "$BIN" serve --http "127.0.0.1:$port" "${db_args[@]}" >"$work/server.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 100); do curl -fs "$base/v1/health" >/dev/null && break; sleep 0.1; done
  curl -fs "$base/v1/ready" >/dev/null || fail "not ready"
  if [[ -z "$dburl" ]]; then
    echo "-- $label: offline commands work beside the server (shared file lock, the default)"
    "$BIN" admin create --email other@example.com --password 'change-me-now' "${db_args[@]}" \
      || fail "admin create beside a running server"
    echo "-- $label: database.exclusive refuses a second process at once"
    local xport=$(( port + 1 )) t0 out xpid
    "$BIN" admin create --email admin@example.com --password 'change-me-now' --data-dir "$work/xdata"
    FERROBASE_DATABASE_EXCLUSIVE=true "$BIN" serve --http "127.0.0.1:$xport" --data-dir "$work/xdata" \
      >"$work/xserver.log" 2>&1 &
    xpid=$!
    for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$xport/v1/ready" >/dev/null && break; sleep 0.1; done
    curl -fs "http://127.0.0.1:$xport/v1/ready" >/dev/null || fail "exclusive server not ready"
    t0=$SECONDS
    out=$("$BIN" admin create --email other@example.com --password 'change-me-now' --data-dir "$work/xdata" 2>&1) \
      && fail "a second process opened an exclusively held SQLite file"
    grep -q "in use by another process" <<<"$out" || fail "unclear refusal: $out"
    (( SECONDS - t0 <= 3 )) || fail "the refusal took $(( SECONDS - t0 )) s"
    kill -TERM "$xpid"; wait "$xpid" || fail "exclusive server: non-zero exit after SIGTERM"
    "$BIN" admin create --email other@example.com --password 'change-me-now' --data-dir "$work/xdata" \
      || fail "the file stays locked after the exclusive server stopped"
  fi

  echo "-- $label: init, plan, apply"
  "$BIN" init "$work/myapp" --name myapp
  sed -i "s#http://127.0.0.1:8090#$base#" "$work/myapp/ferrobase.toml"
  "$BIN" login --server "$base" --email admin@example.com --password 'change-me-now'
  (cd "$work/myapp" && "$BIN" plan | tee "$work/plan.txt")
  grep -q "posts" "$work/plan.txt" || fail "plan does not mention posts"
  set +e; (cd "$work/myapp" && "$BIN" plan --detailed-exitcode >/dev/null); rc=$?; set -e
  [[ $rc == 4 ]] || fail "plan --detailed-exitcode gave $rc, want 4"
  (cd "$work/myapp" && "$BIN" apply --yes)
  set +e; (cd "$work/myapp" && "$BIN" plan --detailed-exitcode >/dev/null); rc=$?; set -e
  [[ $rc == 0 ]] || fail "plan after apply gave $rc, want 0"
  # an invalid project file exits 2 and changes nothing
  cp "$work/myapp/collections/posts.toml" "$work/posts.bak"
  echo 'oops = [' >> "$work/myapp/collections/posts.toml"
  set +e; (cd "$work/myapp" && "$BIN" apply --yes 2>"$work/err.txt"); rc=$?; set -e
  [[ $rc == 2 ]] || fail "invalid project gave exit $rc, want 2"
  grep -q "posts.toml" "$work/err.txt" || fail "error does not name the file: $(cat "$work/err.txt")"
  cp "$work/posts.bak" "$work/myapp/collections/posts.toml"
  history_out="$("$BIN" schema history --server "$base")" || fail "schema history exited non-zero"
  grep -q "v1" <<<"$history_out" || fail "history"
  # pull mirrors the server into a folder that then plans to nothing
  mkdir -p "$work/pulled" && cp "$work/myapp/ferrobase.toml" "$work/pulled/"
  (cd "$work/pulled" && "$BIN" pull && "$BIN" plan --detailed-exitcode >/dev/null) || fail "pull then plan is not a no-op"
  [[ -f "$work/pulled/collections/posts.toml" ]] || fail "pull wrote no posts.toml"

  echo "-- $label: records with curl"
  local token
  token=$(curl -fs --json '{"email":"admin@example.com","password":"change-me-now"}' "$base/v1/admin/auth/login" | json "d['token']")
  local id
  id=$(curl -fs --json '{"title":"Hello from curl","published":true}' "$base/v1/collections/posts/records" | json "d['id']")
  curl -fs "$base/v1/collections/posts/records/$id" | json "d['title']" | grep -q "Hello from curl" || fail "view"
  # CI-style: no stored login, a token in FERROBASE_TOKEN
  (cd "$work/myapp" && XDG_CONFIG_HOME="$work/empty" FERROBASE_TOKEN="$token" "$BIN" plan --detailed-exitcode >/dev/null) || fail "plan with FERROBASE_TOKEN"
  set +e; (cd "$work/myapp" && XDG_CONFIG_HOME="$work/empty" FERROBASE_TOKEN="fba_wrong" "$BIN" plan >/dev/null 2>&1); rc=$?; set -e
  [[ $rc == 1 ]] || fail "a wrong token gave exit $rc, want 1"
  curl -fs -X PATCH -H "Authorization: Bearer $token" -H 'If-Match: "1"' --json '{"title":"Edited"}' "$base/v1/collections/posts/records/$id" | json "d['version']" | grep -q 2 || fail "update"
  curl -fs "$base/v1/collections/posts/records?filter=title~'edit'&sort=-created_at&limit=10" | json "len(d['items'])" | grep -q 1 || fail "filter"

  echo "-- $label: kill -9 keeps acknowledged writes"
  local ids=()
  for i in $(seq 1 20); do
    ids+=("$(curl -fs --json "{\"title\":\"durable $i\"}" "$base/v1/collections/posts/records" | json "d['id']")")
  done
  kill -9 "$pid"; wait "$pid" 2>/dev/null || true
  "$BIN" serve --http "127.0.0.1:$port" "${db_args[@]}" >>"$work/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do curl -fs "$base/v1/health" >/dev/null && break; sleep 0.1; done
  for i in "${ids[@]}"; do curl -fs "$base/v1/collections/posts/records/$i" >/dev/null || fail "lost $i after kill -9"; done
  curl -s -X PATCH --json '{"title":"anon"}' "$base/v1/collections/posts/records/$id" -o /dev/null -w '%{http_code}' | grep -q 401 || fail "anonymous update must be refused"
  curl -fs -X DELETE -H "Authorization: Bearer $token" "$base/v1/collections/posts/records/$id" -o /dev/null -w '%{http_code}' | grep -q 204 || fail "delete"

  echo "-- $label: push.toml, a device and ferrobase push send"
  printf '[categories.marketing]\ndefault = true\ndescription = "Offers"\n' > "$work/myapp/push.toml"
  (cd "$work/myapp" && "$BIN" plan) > "$work/plan2.txt" || fail "plan with push.toml"
  grep -q "push category marketing" "$work/plan2.txt" || fail "plan does not show the category: $(cat "$work/plan2.txt")"
  (cd "$work/myapp" && "$BIN" apply --yes) >/dev/null || fail "apply push.toml"
  user=$(curl -fs --json '{"email":"phone@example.com","password":"a long password"}' "$base/v1/auth/signup")
  utoken=$(json "d['access_token']" <<<"$user"); uid=$(json "d['user']['id']" <<<"$user")
  curl -fs -H "Authorization: Bearer $utoken" --json '{"platform":"ios","token":"abc123"}' "$base/v1/devices" >/dev/null || fail "register device"
  push_out="$("$BIN" push send --server "$base" --user "$uid" --title Hi --category marketing --wait)" || fail "push send"
  # No provider is configured in the quick start: the delivery ends failed, with that reason.
  grep -q "done:.*failed 1" <<<"$push_out" || fail "push send: $push_out"
  job=$(sed -n 's/^queued push job //p' <<<"$push_out")
  status_out="$("$BIN" push status --server "$base" "$job")" || fail "push status"
  grep -q "provider_not_configured" <<<"$status_out" || fail "push status: $status_out"
  set +e; "$BIN" push send --server "$base" --topic news --body x --category nope 2>"$work/err.txt"; rc=$?; set -e
  [[ $rc == 2 ]] || fail "unknown category gave exit $rc, want 2"
  grep -q "category" "$work/err.txt" || fail "error does not name the category"
  # pull mirrors push.toml too, so the pulled folder plans to nothing
  (cd "$work/pulled" && "$BIN" pull && "$BIN" plan --detailed-exitcode >/dev/null) || fail "pull with push.toml then plan is not a no-op"
  grep -q "marketing" "$work/pulled/push.toml" || fail "pull wrote no push.toml"

  echo "-- $label: SIGTERM shuts down cleanly"
  kill -TERM "$pid"; wait "$pid" || fail "non-zero exit after SIGTERM"

  echo "-- $label: audit verify (offline)"
  # Captured first: `cmd | grep -q` closes the pipe at the first match, and the CLI's next
  # line (the head hash) would then fail on a broken pipe under pipefail.
  verify_out="$("$BIN" audit verify "${db_args[@]}")" || fail "audit verify exited non-zero"
  grep -q "intact" <<<"$verify_out" || fail "audit verify"
  if [[ -z "$dburl" ]]; then
    python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute(\"UPDATE _fb_audit SET action='forged' WHERE seq=(SELECT MIN(seq) FROM _fb_audit)\"); c.commit()" "$work/data/data.db"
  else
    psql "$dburl" -qc "UPDATE _fb_audit SET action='forged' WHERE seq=(SELECT MIN(seq) FROM _fb_audit)"
  fi
  set +e; "$BIN" audit verify "${db_args[@]}" 2>"$work/err.txt"; rc=$?; set -e
  [[ $rc == 1 ]] || fail "tampered audit log verified (exit $rc)"
  grep -q "altered" "$work/err.txt" || fail "audit verify does not say what was altered"
  rm -rf "$work"
  echo "-- $label: ok"
}

run_scenario sqlite ""
if psql "$PG_URL" -qtAc 'select 1' >/dev/null 2>&1; then
  db="fb_e2e_$RANDOM$RANDOM"
  psql "$PG_URL" -qc "CREATE DATABASE $db" >/dev/null
  run_scenario postgres "${PG_URL%/*}/$db"
  psql "$PG_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
elif [[ "${FERROBASE_REQUIRE_PG:-}" == 1 ]]; then
  fail "PostgreSQL required but not reachable"
else
  echo "SKIPPED: PostgreSQL end-to-end (not reachable)"
fi
echo "1 passed, 0 failed"
