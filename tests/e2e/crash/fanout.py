"""kill -9 during fan-out: every acknowledged write's event survives.

A subscriber reads /v1/realtime while a writer creates records as fast as it can; it hangs up
after LIVE_EVENTS events (so most events of acknowledged creates exist only in the server's
change log when the process dies), and after ACKED_BEFORE_KILL acknowledged creates the server
gets SIGKILL mid-write. The server is
started again on the same data dir and port, the subscriber resumes with Last-Event-ID, and
every create that was answered 201 must arrive exactly once, in increasing seq, across the two
streams. Python standard library only. Usage: fanout.py BIN DATA_DIR PORT PID TOKEN [SERVE ARGS...]
"""
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time

from lib import fail, wait_ready

BIN, DATA, PORT, PID, TOKEN = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
SERVE_ARGS = sys.argv[6:]
ACKED_BEFORE_KILL = 200
LIVE_EVENTS = 50


def subscribe(last_id, events, stop, limit=None):
    """Reads events into `events` (list of (seq, record id)) until the stream ends, `stop`, or
    `limit` events."""
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
    headers = {"Accept": "text/event-stream", "Authorization": f"Bearer {TOKEN}"}
    if last_id is not None:
        headers["Last-Event-ID"] = str(last_id)
    conn.request("GET", "/v1/realtime?collections=feed", headers=headers)
    resp = conn.getresponse()
    if resp.status != 200:
        fail(f"subscribe: {resp.status} {resp.read()[:200]!r}")
    ready.set()
    event, data = None, []
    try:
        while not stop.is_set():
            line = resp.fp.readline()
            if not line:
                return
            line = line.decode().rstrip("\n")
            if line == "":
                if event == "record" and data:
                    d = json.loads("\n".join(data))
                    events.append((d["seq"], d["record"]["id"]))
                    if limit is not None and len(events) >= limit:
                        conn.close()
                        return
                event, data = None, []
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
    except OSError:
        return


acked = []
written_until_kill = threading.Event()


def writer():
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=5)
    n = 0
    while True:
        n += 1
        body = json.dumps({"n": n})
        try:
            conn.request("POST", "/v1/collections/feed/records", body=body,
                         headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"})
            resp = conn.getresponse()
            payload = resp.read()
        except (OSError, http.client.HTTPException):
            return  # the server is gone: this write was never acknowledged
        if resp.status != 201:
            fail(f"create: {resp.status} {payload[:200]!r}")
        acked.append(json.loads(payload)["id"])
        if len(acked) == ACKED_BEFORE_KILL:
            written_until_kill.set()


ready = threading.Event()
before, stop = [], threading.Event()
sub = threading.Thread(target=subscribe, args=(None, before, stop, LIVE_EVENTS), daemon=True)
sub.start()
if not ready.wait(10):
    fail("no stream")
w = threading.Thread(target=writer, daemon=True)
w.start()
if not written_until_kill.wait(30):
    fail(f"only {len(acked)} creates acknowledged")
os.kill(PID, signal.SIGKILL)
w.join(10)
sub.join(10)
print(f"ok: killed with {len(acked)} creates acknowledged, {len(before)} events received", flush=True)

server = subprocess.Popen([BIN, "serve", "--http", f"127.0.0.1:{PORT}", "--data-dir", DATA, *SERVE_ARGS],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    wait_ready(PORT, "server did not come back", tries=100)
    last = before[-1][0] if before else 0
    after, ready = [], threading.Event()
    stop2 = threading.Event()
    t = threading.Thread(target=subscribe, args=(last, after, stop2), daemon=True)
    t.start()
    want = set(acked)
    deadline = time.time() + 15
    while time.time() < deadline and not want <= {i for _, i in before + after}:
        time.sleep(0.05)
    stop2.set()
    events = before + after
    ids = [i for _, i in events]
    missing = want - set(ids)
    if len(after) < len(want) - LIVE_EVENTS:
        fail(f"only {len(after)} events replayed after the restart")
    if missing:
        fail(f"{len(missing)} acknowledged creates never reached the subscriber")
    if len(ids) != len(set(ids)):
        fail("an event arrived twice")
    seqs = [s for s, _ in events]
    if seqs != sorted(seqs):
        fail("events out of order")
    print(f"ok: after restart and Last-Event-ID {last}, all {len(want)} acknowledged creates "
          f"arrived once, in order ({len(after)} replayed)", flush=True)
finally:
    server.terminate()
    server.wait(10)
