#!/usr/bin/env bash
# Server memory during a large upload (issue #8: a 200 MB upload keeps RSS growth under
# 32 MiB): one release server on a fresh SQLite data dir and local storage, a record whose
# file field takes SIZE_MB, then the file streamed two ways, each measured as the growth of
# peak RSS (VmHWM, reset with clear_refs before each upload) over the RSS before it:
#   put  PUT …/records/{id}/files/{field} with the raw bytes
#   tus  POST /v1/uploads, one PATCH with all the bytes, then a record write attaching it
#   FERROBASE_BIN=target/release/ferrobase SIZE_MB=200 bench/upload_rss.sh
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${FERROBASE_BIN:-$REPO/target/release/ferrobase}"
SIZE_MB="${SIZE_MB:-200}"
WORK="$(mktemp -d /tmp/fb-upload-rss.XXXXXX)"
PORT=$(( 20000 + RANDOM % 20000 )); BASE="http://127.0.0.1:$PORT"
trap 'kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT
head -c "$((SIZE_MB * 1000 * 1000))" /dev/urandom > "$WORK/blob.bin"
"$BIN" admin create --email a@example.com --password bench-pass-123 --data-dir "$WORK/data" >/dev/null
FERROBASE_STORAGE_MAX_FILE_SIZE="$((SIZE_MB + 1))MB" FERROBASE_AUTH_RATE_LIMITS_ENABLED=false \
  "$BIN" serve --http "127.0.0.1:$PORT" --data-dir "$WORK/data" >"$WORK/server.log" 2>&1 &
PID=$!
for _ in $(seq 1 100); do curl -fs "$BASE/v1/ready" >/dev/null && break; sleep 0.1; done
ADMIN=$(curl -fs --json '{"email":"a@example.com","password":"bench-pass-123"}' "$BASE/v1/admin/auth/login" | jq -r .token)
curl -fs -o /dev/null -H "authorization: Bearer $ADMIN" --json "{\"collections\":[{\"name\":\"blobs\",\"fields\":{\"data\":{\"type\":\"file\",\"max_size\":\"$((SIZE_MB + 1))MB\"}},\"rules\":{\"create\":\"@auth.id != ''\",\"update\":\"@auth.id != ''\",\"view\":\"@auth.id != ''\"}}]}" "$BASE/v1/admin/schema/apply"
TOKEN=$(curl -fs --json '{"email":"u@example.com","password":"a long password"}' "$BASE/v1/auth/signup" | jq -r .access_token)
kib() { awk -v k="$1" '$1 == k":" {print $2}' "/proc/$PID/status"; }
measure() {
  local label="$1"; shift
  echo 5 > "/proc/$PID/clear_refs"
  local before; before=$(kib VmRSS)
  "$@"
  local peak; peak=$(kib VmHWM)
  echo "$label: RSS before $((before / 1024)) MiB, peak during $((peak / 1024)) MiB, growth $(((peak - before) / 1024)) MiB"
}
REC=$(curl -fs -H "authorization: Bearer $TOKEN" --json '{}' "$BASE/v1/collections/blobs/records" | jq -r .id)
put() {
  curl -fs -o /dev/null -X PUT -H "authorization: Bearer $TOKEN" -H 'content-type: application/octet-stream' \
    -H 'content-disposition: attachment; filename="blob.bin"' --data-binary "@$WORK/blob.bin" \
    "$BASE/v1/collections/blobs/records/$REC/files/data"
}
tus() {
  local loc
  loc=$(curl -fs -D - -o /dev/null -X POST -H "authorization: Bearer $TOKEN" -H 'tus-resumable: 1.0.0' \
    -H "upload-length: $((SIZE_MB * 1000 * 1000))" -H "upload-metadata: filename $(printf blob.bin | base64)" \
    "$BASE/v1/uploads" | awk 'tolower($1) == "location:" {print $2}' | tr -d '\r')
  curl -fs -o /dev/null -X PATCH -H "authorization: Bearer $TOKEN" -H 'tus-resumable: 1.0.0' -H 'upload-offset: 0' \
    -H 'content-type: application/offset+octet-stream' --data-binary "@$WORK/blob.bin" "$BASE$loc"
  curl -fs -o /dev/null -X PATCH -H "authorization: Bearer $TOKEN" --json "{\"data\":{\"upload\":\"${loc##*/}\"}}" \
    "$BASE/v1/collections/blobs/records/$REC"
}
measure "put ${SIZE_MB} MB" put
measure "tus ${SIZE_MB} MB" tus
