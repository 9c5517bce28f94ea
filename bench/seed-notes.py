#!/usr/bin/env python3
"""Seed the `notes` collection (title, body, owner -> the bench user) for the owner-rule list.

  seed-notes.py --server pocketbase --base URL --token TOKEN --owner USER_ID [--notes 10000]
  seed-notes.py --server ferrobase  --base URL --token TOKEN --owner USER_ID [--notes 10000]

Writes as the bench user (its own token), so the create rules are exercised too:
- PocketBase: sequential single creates, `Authorization: <token>` (its batch API is off by
  default);
- Ferrobase: `POST /v1/batch` with 100 creates per call, `Authorization: Bearer <token>`.
Same bodies on both (random words, seed 7). Prints a JSON summary on stdout.
"""
import argparse
import http.client
import json
import random
import sys
import time
import urllib.parse

WORDS = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod "
         "tempor incididunt ut labore et dolore magna aliqua").split()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", choices=("pocketbase", "ferrobase"), required=True)
    ap.add_argument("--base", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--owner", required=True)
    ap.add_argument("--notes", type=int, default=10000)
    a = ap.parse_args()

    u = urllib.parse.urlsplit(a.base)
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=60)
    pb = a.server == "pocketbase"
    hdrs = {"Content-Type": "application/json",
            "Authorization": a.token if pb else f"Bearer {a.token}"}

    def post(path, obj):
        conn.request("POST", path, body=json.dumps(obj), headers=hdrs)
        r = conn.getresponse()
        data = r.read()
        return r.status, data

    rng = random.Random(7)
    bodies = [{"title": " ".join(rng.choices(WORDS, k=5)),
               "body": " ".join(rng.choices(WORDS, k=22)),
               "owner": a.owner} for _ in range(a.notes)]
    created = 0
    t0 = time.perf_counter()
    if pb:
        for b in bodies:
            st, data = post("/api/collections/notes/records", b)
            if st != 200:
                print(f"create failed: HTTP {st}: {data[:400]!r}", file=sys.stderr)
                return 1
            created += 1
    else:
        path = "/v1/collections/notes/records"
        for i in range(0, len(bodies), 100):
            ops = [{"method": "POST", "path": path, "body": b} for b in bodies[i:i + 100]]
            st, data = post("/v1/batch", {"operations": ops})
            if st != 200:
                print(f"batch failed: HTTP {st}: {data[:400]!r}", file=sys.stderr)
                return 1
            created += len(ops)
    elapsed = time.perf_counter() - t0
    print(json.dumps({"notes_created": created, "seconds": round(elapsed, 3),
                      "per_sec": round(created / elapsed, 1) if elapsed else None,
                      "method": "single creates" if pb else "/v1/batch, 100 per call"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
