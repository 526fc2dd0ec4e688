"""The bench's rest-hook receiver: records when each notification arrives, and answers 200 at once.

    python bench/hook_receiver.py PORT OUTFILE

A separate process (the bench's own client threads must not delay a receipt by holding the GIL). For
every request it appends one tab-separated line to OUTFILE, flushed at once:

    <receipt time, unix seconds> <method> <path> <X-FHIR-Idempotency-Key> <meta.lastUpdated or ->

The rest-hook channel with payload `application/fhir+json` PUTs `[endpoint]/[type]/[id]`
(https://hl7.org/fhir/R4/subscription.html#2.46.7.1), so the path names the subscription (the bench
gives each one its own endpoint, `/hook/<n>`) and the resource; the body's `meta.lastUpdated` is the
version's commit-side timestamp on the server's clock (the same machine's). The time is taken before
the body is read, so parsing does not count as delivery time.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    out = None
    lock = threading.Lock()

    def _any(self) -> None:
        received = time.time()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
        updated = "-"
        if body:
            try:
                updated = json.loads(body).get("meta", {}).get("lastUpdated") or "-"
            except ValueError:
                updated = "unparsable"
        key = self.headers.get("X-FHIR-Idempotency-Key") or "-"
        line = f"{received:.6f}\t{self.command}\t{self.path}\t{key}\t{updated}\n"
        with self.lock:
            self.out.write(line)
            self.out.flush()

    do_POST = do_PUT = do_DELETE = _any

    def log_message(self, *args) -> None:
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024


if __name__ == "__main__":
    port, path = int(sys.argv[1]), sys.argv[2]
    with open(path, "a", buffering=1) as out:
        Handler.out = out
        server = Server(("127.0.0.1", port), Handler)
        print(f"listening on {port}", flush=True)
        server.serve_forever()
