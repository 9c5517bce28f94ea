"""What the kill -9 clients share: failing loudly, and waiting for a (re)started server."""
import http.client
import sys
import time


def fail(msg):
    print(f"FAIL: {msg}", flush=True)
    sys.exit(1)


def wait_ready(port, why, tries=200):
    """Returns once GET /v1/ready answers 200 on `port`; fails with `why` after `tries`
    attempts 0.1 s apart."""
    for _ in range(tries):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/v1/ready")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    fail(why)
