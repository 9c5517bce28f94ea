#!/usr/bin/env python3
"""One push to every seeded device, measured (bench/push.sh runs it; standard library only).

Usage: push-measure.py BASE ADMIN_TOKEN SERVER_PID STATS_URL DEVICES TOPIC

POST /v1/push to the topic, then polls GET /v1/push/{id}?limit=1 every POLL seconds (env,
default 0.1) until the job is `done`, sampling the server's VmRSS (/proc/PID/status) at each
poll. Prints one JSON object: the time from the POST to the fan-out being complete (every
delivery row exists: the counts sum to DEVICES), to the job being done, deliveries/s (sent over
the time from the POST to done), the counts, the fake providers' tallies (requests over this push; tokens and
the most requests any token got since the fake started), whether every device got exactly one
request in this push (ROUND env: the how-manieth push to the same devices this is, default 1)
the CPU seconds the server and (FAKE_PID env) fake-push used from the POST to done, and the
server's VmRSS and RssAnon before / peak / after in KiB, and its open file descriptors (mostly
provider connections) before and at the peak.
"""
import json
import os
import sys
import time
import urllib.request

BASE, TOKEN, PID, STATS, DEVICES, TOPIC = sys.argv[1:7]
DEVICES = int(DEVICES)
POLL = float(os.environ.get("POLL", "0.1"))
TIMEOUT = float(os.environ.get("PUSH_TIMEOUT", "600"))


def call(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(BASE + path, data=data, method=method)
    req.add_header("Authorization", f"Bearer {TOKEN}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, json.loads(r.read() or b"null")


def rss_kib(field="VmRSS"):
    """VmRSS (all resident memory, including pages of the SQLite file that readers map) or
    RssAnon (the process's own heap and stacks) in KiB."""
    with open(f"/proc/{PID}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def cpu_s(pid):
    """User + system CPU seconds of a process so far."""
    if not pid:
        return 0.0
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


FAKE_PID = os.environ.get("FAKE_PID", "")


def stats():
    with urllib.request.urlopen(STATS, timeout=10) as r:
        return json.loads(r.read())


before_stats = stats()
rss_before = rss_kib()
anon_before = rss_kib("RssAnon")
cpu_before = (cpu_s(PID), cpu_s(FAKE_PID))
t0 = time.monotonic()
status, body = call("POST", "/v1/push", {
    "to": {"topic": TOPIC}, "title": "Benchmark", "body": "Hello from bench/push.sh",
    "data": {"n": "1"},
})
t_accepted = time.monotonic() - t0
if status != 202:
    sys.exit(f"POST /v1/push answered {status}: {body}")
job = body["job_id"]
peak, anon_peak, samples = rss_before, anon_before, []
fds_before = fds_peak = len(os.listdir(f"/proc/{PID}/fd"))
fanned_out = done = None
job_body = None
while True:
    _, job_body = call("GET", f"/v1/push/{job}?limit=1")
    now = time.monotonic() - t0
    rss = rss_kib()
    peak = max(peak, rss)
    anon_peak = max(anon_peak, rss_kib("RssAnon"))
    fds_peak = max(fds_peak, len(os.listdir(f"/proc/{PID}/fd")))
    samples.append((round(now, 2), rss))
    total = sum(job_body["counts"].values())
    if fanned_out is None and total >= DEVICES:
        fanned_out = now
    if job_body["status"] == "done":
        done = now
        if fanned_out is None:
            fanned_out = now
        break
    if now > TIMEOUT:
        sys.exit(f"job {job} not done after {TIMEOUT} s: {job_body}")
    time.sleep(POLL)
cpu_after = (cpu_s(PID), cpu_s(FAKE_PID))
after_stats = stats()
time.sleep(1)
rss_after = rss_kib()
anon_after = rss_kib("RssAnon")


def delta(name):
    a, b = after_stats[name], before_stats[name]
    return {"requests": a["requests"] - b["requests"], "by_token_max": a["by_token_max"],
            "tokens": a["tokens"], "histogram": a["histogram"], "by_status": a["by_status"]}


counts = job_body["counts"]
# The fakes count since they started: after push number ROUND to the same devices, every token
# has exactly ROUND requests iff this push sent each device exactly one.
ROUND = int(os.environ.get("ROUND", "1"))
each_once = (
    sum(delta(p)["requests"] for p in ("apns", "fcm")) == DEVICES
    and sum(after_stats[p]["tokens"] for p in ("apns", "fcm")) == DEVICES
    and all(set(after_stats[p]["histogram"]) <= {str(ROUND)} for p in ("apns", "fcm"))
)
print(json.dumps({
    "job_id": job,
    "devices": DEVICES,
    "accepted_s": round(t_accepted, 3),
    "fanout_complete_s": round(fanned_out, 3),
    "done_s": round(done, 3),
    "deliveries_per_s": round(counts.get("sent", 0) / done) if done else 0,
    "each_device_once": each_once,
    "counts": counts,
    "apns": delta("apns"),
    "fcm": delta("fcm"),
    "cpu_s": {"server": round(cpu_after[0] - cpu_before[0], 2),
              "fake_push": round(cpu_after[1] - cpu_before[1], 2)},
    "rss_kib": {"before": rss_before, "peak": peak, "after": rss_after},
    "open_fds": {"before": fds_before, "peak": fds_peak},
    "rss_anon_kib": {"before": anon_before, "peak": anon_peak, "after": anon_after},
    "rss_samples": samples[:: max(1, len(samples) // 40)],
}))
