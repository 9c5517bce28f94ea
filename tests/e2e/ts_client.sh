#!/usr/bin/env bash
# TypeScript clients generated from a deployment's GET /v1/openapi.json (examples/photoshare)
# by two standard generators, openapi-typescript (+ openapi-fetch) and @hey-api/openapi-ts,
# type-check an app each with `tsc --strict`; the openapi-fetch app is then compiled and run
# with Node against the real server (sign-up, create with required fields only, one-field
# PATCH, stale If-Match, list with `fields`, batch, problem members). A deliberately wrong app
# (tests/e2e/ts/wrong/) must fail tsc, so the check can fail. Tools are pinned in
# tests/e2e/ts/package.json + package-lock.json (npm ci). Generated code lives in
# tests/e2e/ts/gen/ (gitignored). Prints `N passed, 0 failed` last.
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/e2e/sdk/lib.sh
TS="$PWD/tests/e2e/ts"

command -v node >/dev/null && command -v npm >/dev/null \
  || (apt-get update -qq && apt-get install -y -qq nodejs npm) || fail "Node.js and npm are needed"
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' || fail "Node.js 20+ is needed"

echo "-- npm ci (pinned generators and TypeScript)"
(cd "$TS" && npm ci --no-audit --no-fund --loglevel=error) || fail "npm ci"

export FERROBASE_AUTH_RATE_LIMITS_ENABLED=false
start_server
apply_example "$(admin_token)"

echo "-- generate clients from the served document"
rm -rf "$TS/gen" "$TS/build"
mkdir -p "$TS/gen"
curl -fs "$BASE/v1/openapi.json" > "$TS/gen/openapi.json" || fail "GET /v1/openapi.json"
(cd "$TS" && npx --no-install openapi-typescript gen/openapi.json -o gen/openapi-typescript/schema.ts) \
  >"$WORK/gen-oat.log" 2>&1 || { cat "$WORK/gen-oat.log"; fail "openapi-typescript"; }
(cd "$TS" && npx --no-install openapi-ts -i ./gen/openapi.json -o gen/hey-api -c @hey-api/client-fetch) \
  >"$WORK/gen-hey.log" 2>&1 || { cat "$WORK/gen-hey.log"; fail "@hey-api/openapi-ts"; }

passed=0
ok() { echo "ok: $*"; passed=$((passed + 1)); }
tsc() { (cd "$TS" && npx --no-install tsc "$@"); }

echo "-- tsc --strict: the app on openapi-typescript + openapi-fetch (emits JS to run)"
tsc -p fetch/tsconfig.json || fail "tsc (openapi-fetch app)"
ok "openapi-fetch app type-checks"
echo "-- tsc --strict --noEmit: the app on @hey-api/openapi-ts"
tsc -p hey/tsconfig.json --noEmit || fail "tsc (hey-api app)"
ok "hey-api app type-checks"

echo "-- tsc must refuse a wrong app (PATCH body with a field of the wrong type)"
set +e; tsc -p wrong/tsconfig.json --noEmit >"$WORK/wrong.log" 2>&1; rc=$?; set -e
cat "$WORK/wrong.log"
[[ $rc != 0 ]] || fail "tsc accepted tests/e2e/ts/wrong/patch_wrong_type.ts"
grep -q "wrong/patch_wrong_type.ts.*error TS2322" "$WORK/wrong.log" \
  || fail "tsc failed, but not with the expected type error in wrong/patch_wrong_type.ts"
[[ $(grep -c "error TS" "$WORK/wrong.log") == 1 ]] || fail "the wrong app should have exactly one type error"
ok "tsc refuses the wrong app"

echo "-- run the openapi-fetch app against the server (Node $(node --version))"
set +e
node "$TS/build/fetch/fetch/app.js" "$BASE" | tee "$WORK/app.log"
rc=${PIPESTATUS[0]}
set -e
[[ $rc == 0 ]] || { tail -n 30 "$WORK/server.log"; fail "the openapi-fetch app"; }
app_passed=$(tail -n 1 "$WORK/app.log" | sed -n 's/^\([0-9]*\) passed, 0 failed$/\1/p')
[[ -n "$app_passed" ]] || fail "the app printed no summary"
if grep -q "request failed" "$WORK/server.log"; then grep "request failed" "$WORK/server.log"; fail "server logged a 5xx"; fi
echo "$((passed + app_passed)) passed, 0 failed"
