#!/usr/bin/env bash
# One extra closed-loop scenario, measured exactly like the shared bench.sh measures its own
# (same wait-for-quiet, same load tool and flags, VmHWM reset, CPU accounting, same row format),
# plus request headers, which bench.sh cannot send (the owner-rule list needs a token), and
# one scenario at a time (run.sh uses it for a subset of bench.sh's scenarios under ONLY=).
#
#   bench/scenario.sh OUT_DIR SERVER_PID LABEL NAME URL [HEADER ...]
#   METHOD=POST BODY='{"title": "x"}' bench/scenario.sh ...    # JSON body (Content-Type added)
#
# Appends one row to OUT_DIR/summary-extra.md:
#   | label | req/s | p50 ms | p99 ms | requests | non-2xx+errors | VmHWM MiB | RSS after MiB | cpu |
# Environment as bench.sh: DURATION, CONNS, LOAD_TOOL, QUIET_CORES, QUIET_MAX_WAIT, WRK_THREADS;
# METHOD (GET) and BODY (none). CONNS=1 WRK_THREADS=1 is one client on one keep-alive connection.
# WRK_LUA: a Lua file appended to the generated wrk script (e.g. a `request` function that
# varies a header per request, bench/idempotency-key.lua); needs LOAD_TOOL=wrk.
set -euo pipefail

OUT_DIR="$1" SERVER_PID="$2" LABEL="$3" NAME="$4" URL="$5"
shift 5
HEADERS=("$@")
METHOD="${METHOD:-GET}" BODY="${BODY:-}"
[[ -n "$BODY" ]] && HEADERS+=("Content-Type: application/json")
DURATION="${DURATION:-10}" CONNS="${CONNS:-32}" LOAD_TOOL="${LOAD_TOOL:-auto}"
QUIET_CORES="${QUIET_CORES:-0.25}" QUIET_MAX_WAIT="${QUIET_MAX_WAIT:-60}"
log() { echo "[scenario] $*" >&2; }
mkdir -p "$OUT_DIR"
if [[ "$LOAD_TOOL" == auto ]]; then
  if command -v oha >/dev/null; then LOAD_TOOL=oha; else LOAD_TOOL=wrk; fi
fi
WRK_LUA="${WRK_LUA:-}"
if [[ -n "$WRK_LUA" && "$LOAD_TOOL" != wrk ]]; then
  log "$LABEL: WRK_LUA needs LOAD_TOOL=wrk (got $LOAD_TOOL)"; exit 1
fi

mem_mib() { awk -v k="$1:" '$1 == k {printf "%.1f", $2 / 1024}' "/proc/$SERVER_PID/status"; }
TICK="$(getconf CLK_TCK)"
machine_busy_s() { awk -v t="$TICK" '$1 == "cpu" {print ($2 + $3 + $4 + $7 + $8) / t}' /proc/stat; }
server_cpu_s() { awk -v t="$TICK" '{print ($14 + $15) / t}' "/proc/$SERVER_PID/stat"; }
children_cpu_s() {
  awk 'NR == 2 {s = 0; for (i = 1; i <= 2; i++) {split($i, a, /[ms]/); s += a[1] * 60 + a[2]}; print s}' "$1"
}
now_s() { date +%s.%N; }

wait_quiet() {  # same rule as bench.sh: < QUIET_CORES busy over 3 s, or give up after QUIET_MAX_WAIT
  local deadline=$((SECONDS + QUIET_MAX_WAIT)) a b busy
  while :; do
    a=$(machine_busy_s); sleep 3; b=$(machine_busy_s)
    busy=$(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.2f", (b - a) / 3}')
    awk -v x="$busy" -v q="$QUIET_CORES" 'BEGIN {exit !(x < q)}' && { echo "$busy" >"$OUT_DIR/$NAME.busy"; return 0; }
    if (( SECONDS >= deadline )); then
      log "machine still busy ($busy cores), going ahead"; echo "$busy" >"$OUT_DIR/$NAME.busy"; return 0
    fi
    log "machine busy ($busy cores), waiting ..."
  done
}

run_oha() {
  local args=(-z "${DURATION}s" -c "$CONNS" -m "$METHOD" -t 30s -w --no-tui --output-format json) h
  for h in "${HEADERS[@]}"; do args+=(-H "$h"); done
  [[ -n "$BODY" ]] && args+=(-d "$BODY")
  oha "${args[@]}" "$URL" >"$OUT_DIR/$NAME.json"
  jq -r '[ .summary.requestsPerSec,
           (.latencyPercentiles.p50 // 0) * 1000, (.latencyPercentiles.p99 // 0) * 1000,
           ([.statusCodeDistribution | to_entries[] | select(.key | startswith("2") | not) | .value] | add // 0),
           ([.errorDistribution[]] | add // 0),
           ([.statusCodeDistribution[]] | add // 0) ] | @tsv' "$OUT_DIR/$NAME.json"
}
run_wrk() {
  local lua="$OUT_DIR/$NAME.lua" h
  {
    echo "wrk.method = \"$METHOD\""
    [[ -n "$BODY" ]] && echo "wrk.body = [[$BODY]]"
    for h in "${HEADERS[@]}"; do
      printf 'wrk.headers["%s"] = "%s"\n' "${h%%:*}" "$(sed 's/^ *//' <<<"${h#*:}")"
    done
    [[ -n "$WRK_LUA" ]] && cat "$WRK_LUA"
    cat <<'LUA'
done = function(s, lat, req)
  io.write(string.format("WRK_RESULT\t%.2f\t%.3f\t%.3f\t%d\t%d\t%d\n",
    s.requests / (s.duration / 1e6), lat:percentile(50) / 1000, lat:percentile(99) / 1000,
    s.errors.status, s.errors.connect + s.errors.read + s.errors.write + s.errors.timeout,
    s.requests))
end
LUA
  } >"$lua"
  wrk -t "${WRK_THREADS:-2}" -c "$CONNS" -d "${DURATION}s" --timeout 30s --latency -s "$lua" "$URL" \
    >"$OUT_DIR/$NAME.txt"
  awk -F'\t' '$1 == "WRK_RESULT" {print $2 "\t" $3 "\t" $4 "\t" $5 "\t" $6 "\t" $7}' "$OUT_DIR/$NAME.txt"
}

# One probe request first: the response (status, total, item count) goes next to the raw output,
# so a wrong token or rule shows up as a failed probe, not as a fast table row of 401s. (With a
# body the probe is one more write, e.g. one more created record.)
curl_h=(-X "$METHOD"); for h in "${HEADERS[@]}"; do curl_h+=(-H "$h"); done
[[ -n "$BODY" ]] && curl_h+=(--data-binary "$BODY")
code="$(curl -sS -o "$OUT_DIR/$NAME.probe.json" -w '%{http_code}' "${curl_h[@]}" "$URL")"
[[ "$code" == 2?? ]] || { log "$LABEL: probe answered HTTP $code: $(head -c 400 "$OUT_DIR/$NAME.probe.json")"; exit 1; }

log "load average: $(cut -d' ' -f1-3 /proc/loadavg); busiest: $(ps -eo pcpu=,comm= --sort=-pcpu | head -3 | awk '{printf "%s %s%%; ", $2, $1}')"
wait_quiet
log "$LABEL: $METHOD $URL (${DURATION}s, $CONNS conns, $LOAD_TOOL)"
echo 5 >"/proc/$SERVER_PID/clear_refs"
times >"$OUT_DIR/.times0"
t0=$(now_s); m0=$(machine_busy_s); s0=$(server_cpu_s)
r="$("run_$LOAD_TOOL")"
t1=$(now_s); m1=$(machine_busy_s); s1=$(server_cpu_s)
times >"$OUT_DIR/.times1"
c0=$(children_cpu_s "$OUT_DIR/.times0"); c1=$(children_cpu_s "$OUT_DIR/.times1")
IFS=$'\t' read -r rps p50 p99 bad err total <<<"$r"
cpu=$(awk -v w="$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')" \
  -v s="$(awk -v a="$s0" -v b="$s1" 'BEGIN {print b - a}')" \
  -v c="$(awk -v a="$c0" -v b="$c1" 'BEGIN {print b - a}')" \
  -v m="$(awk -v a="$m0" -v b="$m1" 'BEGIN {print b - a}')" \
  'BEGIN {printf "%.2f / %.2f / %.2f", s / w, c / w, m / w}')
printf '| %s | %.0f | %.2f | %.2f | %s | %s | %s | %s | %s |\n' \
  "$LABEL" "$rps" "$p50" "$p99" "$total" "$((bad + err))" "$(mem_mib VmHWM)" "$(mem_mib VmRSS)" "$cpu" \
  | tee -a "$OUT_DIR/summary-extra.md" >&2
sleep 1
