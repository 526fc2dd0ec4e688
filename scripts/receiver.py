"""A tiny notification receiver for trying subscriptions locally: prints every request it gets.

    python scripts/receiver.py 9000

then create a rest-hook Subscription whose endpoint is http://127.0.0.1:9000/hook (the server must
allow that address: FHIR_SUBSCRIPTION_ALLOWED_ENDPOINTS=127.0.0.1). Answers 200 to everything.
"""

from __future__ import annotations

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_SHOWN = (
    "Content-Type",
    "X-FHIR-Idempotency-Key",
    "X-FHIR-Event-Number",
    "X-FHIR-Signature",
    "Authorization",
)


class Handler(BaseHTTPRequestHandler):
    def _any(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        print(f"{self.command} {self.path}", flush=True)
        for name in _SHOWN:
            if self.headers.get(name):
                print(f"  {name}: {self.headers[name]}", flush=True)
        if body:
            print(f"  {body.decode(errors='replace')[:2000]}", flush=True)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_PUT = do_DELETE = _any

    def log_message(self, *args) -> None:
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
    print(f"Listening on http://127.0.0.1:{port}/", flush=True)
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
