"""Real local receivers for channel tests: an HTTP server that records what it is sent, and a socket
that accepts connections and never answers (a receiver that hangs)."""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class HttpReceiver:
    """A local HTTP server on 127.0.0.1; `status` is what it answers, `requests` what it got."""

    status: int = 200
    requests: list[Received] = field(default_factory=list)
    delay: float = 0.0  # seconds each request takes to answer (a slow receiver)
    arrived: list[str] = field(default_factory=list)  # paths of requests as they arrive, before `delay`

    def __enter__(self) -> HttpReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                receiver.arrived.append(self.path)
                if receiver.delay:
                    threading.Event().wait(receiver.delay)
                receiver.requests.append(Received(self.command, self.path, dict(self.headers.items()), body))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_PUT = do_DELETE = _record

            def log_message(self, *args) -> None:  # quiet test output
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    close = __exit__


def start() -> HttpReceiver:
    """A running receiver (call `close()` when done), for fixtures that outlive a `with` block."""
    return HttpReceiver().__enter__()


class SilentReceiver:
    """A listening socket that never accepts nor answers: connecting works, nothing ever comes back."""

    def __enter__(self) -> SilentReceiver:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        return self

    def __exit__(self, *exc) -> None:
        self.sock.close()


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
