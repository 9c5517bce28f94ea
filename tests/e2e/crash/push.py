"""kill -9 during a push: after a restart every device has exactly one delivery, all sent, and
no device is sent twice except those whose send was in flight at the kill.

DEVICES devices (half ios, half android, all on topic `all`) are written straight into the
database (sqlite3 module, or psql for PostgreSQL), then one push goes to the topic through
the real APNs and FCM plugins to a fake-push process (FAKE_PUSH_JSON: the JSON line it
printed; its server.toml is part of SERVE ARGS) answering after ~20 ms. Once the job status
shows KILL_AT delivery rows, the server gets SIGKILL mid-fan-out and mid-send. It is started
again on the same data; once the job is `done`:
- the counts sum to DEVICES (one delivery per device: the rows are keyed job x device) and
  every one of them is `sent`;
- the fakes saw every token at least once and none more than twice, and the tokens sent
  twice (their send was in flight, or answered but not yet recorded, at the kill) are at most
  the in-flight window: `[push] concurrency` x the job runner's concurrent jobs.
Python standard library only. Usage: push.py BIN DATA_DIR PORT PID ADMIN_TOKEN [SERVE ARGS...]
"""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request

from lib import fail, wait_ready

BIN, DATA, PORT, PID, TOKEN = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
SERVE_ARGS = sys.argv[6:]
FAKE = json.load(open(os.environ["FAKE_PUSH_JSON"]))
DEVICES = 20_000
KILL_AT = 5_000
# [push] concurrency (default) x CONCURRENT in server/src/jobs.rs.
WINDOW = 256 * 16
DONE_WAIT = 50
BASE = f"http://127.0.0.1:{PORT}"


def call(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(BASE + path, data=data, method=method,
                                 headers={"Authorization": f"Bearer {TOKEN}",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, json.loads(r.read() or b"null")


def stats():
    with urllib.request.urlopen(FAKE["stats_url"], timeout=10) as r:
        return json.loads(r.read())


def seed():
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
    rows = [(f"dev-{i:06d}", f"user-{i // 2:06d}", "ios" if i % 2 == 0 else "android",
             f"{'apns' if i % 2 == 0 else 'fcm'}-{i:06d}") for i in range(DEVICES)]
    if "--database-url" in SERVE_ARGS:
        url = SERVE_ARGS[SERVE_ARGS.index("--database-url") + 1]
        sql = f"""BEGIN;
INSERT INTO _fb_devices (id, user_id, platform, token, topics, active, last_seen_at, created_at, updated_at)
SELECT format('dev-%s', lpad(i::text, 6, '0')), format('user-%s', lpad((i / 2)::text, 6, '0')),
       CASE i % 2 WHEN 0 THEN 'ios' ELSE 'android' END,
       format('%s-%s', CASE i % 2 WHEN 0 THEN 'apns' ELSE 'fcm' END, lpad(i::text, 6, '0')),
       '["all"]'::jsonb, TRUE, now(), now(), now() FROM generate_series(0, {DEVICES - 1}) AS i;
INSERT INTO _fb_device_topics (topic, device_id) SELECT 'all', id FROM _fb_devices;
COMMIT; ANALYZE _fb_devices; ANALYZE _fb_device_topics;"""
        subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql], check=True)
        return
    db = sqlite3.connect(os.path.join(DATA, "data.db"), timeout=10)
    with db:
        db.executemany("INSERT INTO _fb_devices (id, user_id, platform, token, topics, active, "
                       "last_seen_at, created_at, updated_at) VALUES (?, ?, ?, ?, '[\"all\"]', 1, ?, ?, ?)",
                       [(*r, now, now, now) for r in rows])
        db.executemany("INSERT INTO _fb_device_topics (topic, device_id) VALUES ('all', ?)",
                       [(r[0],) for r in rows])
    db.close()


def job_status(job):
    _, body = call("GET", f"/v1/push/{job}?limit=1")
    return body


t0 = time.time()
seed()
status, body = call("POST", "/v1/push", {"to": {"topic": "all"}, "title": "crash", "body": "kill -9"})
if status != 202:
    fail(f"POST /v1/push answered {status}: {body}")
job = body["job_id"]
while True:
    body = job_status(job)
    rows = sum(body["counts"].values())
    if rows >= KILL_AT or body["status"] == "done":
        break
    if time.time() - t0 > 30:
        fail(f"only {rows} deliveries after 30 s: {body}")
    time.sleep(0.02)
os.kill(PID, signal.SIGKILL)
if body["status"] == "done":
    fail("the push was done before the kill: nothing was interrupted (make it slower)")
at_kill = stats()
requests_at_kill = at_kill["apns"]["requests"] + at_kill["fcm"]["requests"]
print(f"ok: killed with {rows} delivery rows ({body['counts']['sent']} recorded sent, "
      f"{requests_at_kill} provider requests answered so far)", flush=True)

server = subprocess.Popen([BIN, "serve", "--http", f"127.0.0.1:{PORT}", "--data-dir", DATA, *SERVE_ARGS],
                          stdout=open(os.path.join(DATA, "..", "restart.log"), "wb"), stderr=subprocess.STDOUT)
try:
    wait_ready(PORT, "the restarted server never became ready")
    restarted = time.time()
    while True:
        body = job_status(job)
        if body["status"] == "done":
            break
        if time.time() - restarted > DONE_WAIT:
            fail(f"job not done {DONE_WAIT} s after the restart: {body}")
        time.sleep(0.2)
    counts = body["counts"]
    if sum(counts.values()) != DEVICES:
        fail(f"{sum(counts.values())} deliveries for {DEVICES} devices: {counts}")
    if counts["sent"] != DEVICES:
        fail(f"not every delivery was sent: {counts}")
    s = stats()
    tokens = s["apns"]["tokens"] + s["fcm"]["tokens"]
    most = max(s["apns"]["by_token_max"], s["fcm"]["by_token_max"])
    twice = sum(s[p]["histogram"].get("2", 0) for p in ("apns", "fcm"))
    if tokens != DEVICES:
        fail(f"the providers saw {tokens} tokens, not {DEVICES}")
    if most > 2:
        fail(f"a token was sent {most} times: {s}")
    if twice > WINDOW:
        fail(f"{twice} tokens were sent twice, more than the in-flight window {WINDOW}")
    print(f"ok: done {time.time() - restarted:.1f} s after the restart; {DEVICES} deliveries, all sent; "
          f"{twice} tokens sent twice (in flight or unrecorded at the kill; window {WINDOW}), "
          f"none more", flush=True)
finally:
    server.terminate()
    server.wait(10)
