"""kill -9 during uploads: no acknowledged file is lost, nothing is left half-stored, and
every object no record references is removed.

Before the kill, records with covers are created (multipart), one cover is replaced (raw PUT),
and a resumable (tus) upload gets its first half. Then three uploads stream slowly when the
server gets SIGKILL: a raw PUT replacing a cover, a multipart create, and the tus upload's
second half; each has sent more than one 5 MiB storage part, so the local backend holds
their staging files. After a restart on the same data:
- every acknowledged cover downloads byte for byte, the replaced one as its new bytes, and the
  interrupted create made no record;
- the tus upload resumes from the offset HEAD reports, finishes, and attaches to a record;
- within ORPHAN_WAIT seconds the storage directory holds exactly the files records reference:
  the replaced cover, the interrupted uploads' staging files and the tus parts are gone.
Python standard library only. Usage: uploads.py BIN DATA_DIR PORT PID TOKEN [SERVE ARGS...]
"""
import base64
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
STORAGE = os.path.join(DATA, "storage")
MB = 1024 * 1024
ORPHAN_WAIT = 180
PNG = b"\x89PNG\r\n\x1a\n"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TUS = {"Tus-Resumable": "1.0.0"}


def png(size):
    return PNG + os.urandom(size - len(PNG))


def request(method, path, body=None, headers=None, expect=None):
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=60)
    conn.request(method, path, body=body, headers={**AUTH, **(headers or {})})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    if expect is not None and resp.status != expect:
        fail(f"{method} {path}: {resp.status} (wanted {expect}) {data[:300]!r}")
    return resp, data


def multipart(fields, files):
    boundary = "crashboundary" + os.urandom(8).hex()
    out = []
    for name, value in fields.items():
        out.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n'
                   f"Content-Type: application/json\r\n\r\n{value}\r\n".encode())
    for name, (filename, content) in files.items():
        out.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                   f'filename="{filename}"\r\nContent-Type: image/png\r\n\r\n'.encode())
        out.append(content)
        out.append(b"\r\n")
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out), f"multipart/form-data; boundary={boundary}"


def create(title, cover):
    body, ctype = multipart({"data": json.dumps({"title": title})}, {"cover": ("c.png", cover)})
    _, data = request("POST", "/v1/collections/albums/records", body, {"Content-Type": ctype}, 201)
    return json.loads(data)


def download(rec):
    _, data = request("GET", f"/v1/files/albums/{rec['id']}/{rec['cover']}", expect=200)
    return data


def slow_send(method, path, headers, head, total, tail=b"", started=None, pause=0.015):
    """Sends `head`, then random bytes up to `total`, then `tail`, 64 KiB per `pause` (about
    4 MiB/s by default); returns
    once the connection breaks (the server was killed)."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=60)
        conn.putrequest(method, path)
        for k, v in {**AUTH, **headers, "Content-Length": str(total + len(tail))}.items():
            conn.putheader(k, v)
        conn.endheaders()
        conn.send(head)
        sent = len(head)
        chunk = os.urandom(64 * 1024)
        while sent < total:
            n = min(len(chunk), total - sent)
            conn.send(chunk[:n])
            sent += n
            if started is not None and sent >= 7 * MB:
                started.set()
            time.sleep(pause)
        conn.send(tail)
        resp = conn.getresponse()
        fail(f"{method} {path} finished before the kill: {resp.status}")
    except (OSError, http.client.HTTPException):
        return


def stored_files():
    out = set()
    for root, _, files in os.walk(STORAGE):
        for f in files:
            out.add(os.path.relpath(os.path.join(root, f), STORAGE))
    return out


# ---- before the kill: acknowledged files --------------------------------------------------
covers = {}
records = []
for i in range(4):
    content = png(200 * 1024 + i)
    rec = create(f"kept {i}", content)
    covers[rec["id"]] = content
    records.append(rec)
replaced = records[3]
new_cover = png(300 * 1024)
_, data = request("PUT", f"/v1/collections/albums/records/{replaced['id']}/files/cover", new_cover,
                  {"Content-Disposition": 'attachment; filename="new.png"'}, 200)
records[3] = json.loads(data)
covers[replaced["id"]] = new_cover
if records[3]["cover"] == replaced["cover"]:
    fail("a replaced cover kept its name")

tus_bytes = png(12 * MB)
filename = base64.b64encode(b"video.png").decode()
resp, _ = request("POST", "/v1/uploads", None,
                  {**TUS, "Upload-Length": str(len(tus_bytes)), "Upload-Metadata": f"filename {filename}"}, 201)
upload = resp.getheader("Location")
request("PATCH", upload, tus_bytes[:6 * MB],
        {**TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}, 204)

# ---- in flight at the kill -----------------------------------------------------------------
started = [threading.Event() for _ in range(3)]
a = records[0]
body_head, ctype = multipart({"data": json.dumps({"title": "interrupted"})}, {"cover": ("big.png", b"")})
# The multipart body up to the file's bytes, then the file, never finished.
cut = body_head.index(b"\r\n\r\n", body_head.index(b'name="cover"')) + 4
threads = [
    threading.Thread(target=slow_send, args=(
        "PUT", f"/v1/collections/albums/records/{a['id']}/files/cover",
        {"Content-Disposition": 'attachment; filename="big.png"'}, PNG, 20 * MB, b"", started[0])),
    threading.Thread(target=slow_send, args=(
        "POST", "/v1/collections/albums/records", {"Content-Type": ctype},
        body_head[:cut] + PNG, 20 * MB, b"", started[1])),
    threading.Thread(target=slow_send, args=(
        "PATCH", upload, {**TUS, "Upload-Offset": str(6 * MB), "Content-Type": "application/offset+octet-stream"},
        b"", 6 * MB - 1, b"", None, 0.06)),
]
for t in threads:
    t.start()
for e in started[:2]:
    if not e.wait(30):
        fail("the slow uploads never got going")
time.sleep(0.3)
staged = [f for f in stored_files() if "#" in f]
if not staged:
    fail(f"no staging file at the kill: {sorted(stored_files())}")
os.kill(PID, signal.SIGKILL)
for t in threads:
    t.join(30)
print(f"killed with {len(staged)} staging file(s) in storage", flush=True)

# ---- after the restart ---------------------------------------------------------------------
server = subprocess.Popen([BIN, "serve", "--http", f"127.0.0.1:{PORT}", "--data-dir", DATA, *SERVE_ARGS],
                          stdout=open(os.path.join(DATA, "..", "restart.log"), "wb"), stderr=subprocess.STDOUT)
try:
    wait_ready(PORT, "the restarted server never became ready")
    for rec in records:
        _, data = request("GET", f"/v1/collections/albums/records/{rec['id']}", expect=200)
        now = json.loads(data)
        if now["cover"] != rec["cover"]:
            fail(f"record {rec['id']}: cover {now['cover']!r}, acknowledged {rec['cover']!r}")
        if download(now) != covers[rec["id"]]:
            fail(f"record {rec['id']}: the cover's bytes changed")
    _, data = request("GET", '/v1/collections/albums/records?filter=title%3D%22interrupted%22', expect=200)
    if json.loads(data)["items"]:
        fail("the interrupted create made a record")

    resp, _ = request("HEAD", upload, None, TUS, 200)
    offset = int(resp.getheader("Upload-Offset"))
    if not 6 * MB <= offset < len(tus_bytes):
        fail(f"tus offset after the crash: {offset}")
    request("PATCH", upload, tus_bytes[offset:],
            {**TUS, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"}, 204)
    _, data = request("POST", "/v1/collections/albums/records",
                      json.dumps({"title": "resumed", "cover": {"upload": upload.rsplit("/", 1)[1]}}),
                      {"Content-Type": "application/json"}, 201)
    resumed = json.loads(data)
    if download(resumed) != tus_bytes:
        fail("the resumed upload's bytes differ")
    print(f"tus upload resumed at {offset} of {len(tus_bytes)} bytes and attached", flush=True)

    expected = {f"albums/{r['id']}/{r['cover']}" for r in [*records, resumed]}
    began = time.time()
    while True:
        files = stored_files()
        if files == expected:
            break
        if time.time() - began > ORPHAN_WAIT:
            fail(f"after {ORPHAN_WAIT}s storage still holds {sorted(files - expected)}"
                 f" and lacks {sorted(expected - files)}")
        time.sleep(1)
    print(f"storage holds exactly the {len(expected)} referenced files after "
          f"{time.time() - began:.0f}s: no orphans", flush=True)
finally:
    server.send_signal(signal.SIGTERM)
    server.wait(30)
print("ok: kill -9 during uploads lost nothing and left nothing", flush=True)
