"""A resumable upload with tuspy (the tus project's Python client) against a real server:
the upload stops after a few chunks (the process "loses the network"), a new client resumes it
from the server's offset (HEAD, through tuspy's URL storage), the finished upload is attached
to a record and downloaded byte-identical. Usage: python client.py BASE"""
import hashlib
import json
import os
import sys
import tempfile
import urllib.request

from tusclient import client as tus_client
from tusclient.storage import filestorage

BASE = sys.argv[1]


def api(method, path, token=None, body=None):
    req = urllib.request.Request(BASE + path, method=method)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, data) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if raw and r.headers.get_content_type().endswith("json") else raw)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


admin = sys.argv[2]
status, _ = api("POST", "/v1/admin/schema/apply", admin, {"collections": [{
    "name": "videos",
    "fields": {"owner": {"type": "text", "required": True}, "clip": {"type": "file", "max_size": 20000000}},
    "rules": {"view": "owner = @auth.id", "create": "owner = @auth.id"},
}]})
if status != 200:
    fail(f"apply: {status}")
status, signup = api("POST", "/v1/auth/signup", body={"email": "tus@example.com", "password": "a long password"})
if status != 201:
    fail(f"signup: {status} {signup}")
token, owner = signup["access_token"], signup["user"]["id"]

payload = os.urandom(3_500_000)
digest = hashlib.sha256(payload).hexdigest()
work = tempfile.mkdtemp()
path = os.path.join(work, "holiday.mp4")
with open(path, "wb") as f:
    f.write(payload)
storage = filestorage.FileStorage(os.path.join(work, "urls.json"))
headers = {"Authorization": "Bearer " + token}

# First attempt: three 512 KiB chunks, then the "connection" is gone.
first = tus_client.TusClient(BASE + "/v1/uploads", headers=headers).uploader(
    file_path=path, chunk_size=512 * 1024, store_url=True, url_storage=storage)
for _ in range(3):
    first.upload_chunk()
stopped_at = first.offset
if not (0 < stopped_at < len(payload)):
    fail(f"first attempt offset {stopped_at}")
print(f"ok: interrupted after {stopped_at} of {len(payload)} bytes")

# A new client, as after an app restart: finds the upload in its URL storage, asks the server
# where to resume (HEAD) and finishes.
second = tus_client.TusClient(BASE + "/v1/uploads", headers=headers).uploader(
    file_path=path, chunk_size=1024 * 1024, store_url=True, url_storage=storage)
if second.url != first.url:
    fail("the second client did not resume the same upload")
if second.offset != stopped_at:
    fail(f"resumed at {second.offset}, the server had {stopped_at}")
second.upload()
print(f"ok: resumed at {stopped_at} and finished")

upload_id = second.url.rstrip("/").rsplit("/", 1)[-1]
status, rec = api("POST", "/v1/collections/videos/records", token, {"owner": owner, "clip": {"upload": upload_id}})
if status != 201:
    fail(f"attach: {status} {rec}")
status, got = api("GET", f"/v1/files/videos/{rec['id']}/{rec['clip']}", token)
if status != 200 or hashlib.sha256(got).hexdigest() != digest:
    fail("download differs from the upload")
print("ok: attached to a record and downloaded byte-identical")
print("3 passed, 0 failed")
