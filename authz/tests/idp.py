"""A local OpenID Connect identity provider for tests: key sets and discovery documents served over
HTTP on 127.0.0.1, and helpers to sign tokens (well-formed or forged) with generated keys."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

AUDIENCE = "https://fhir.example.org"


class IdentityProvider:
    """Key sets served per tenant name at /<name>/jwks, with a discovery document beside them."""

    def __init__(self) -> None:
        self.base = ""
        self.keys: dict[str, list[Any]] = {}
        self.requests: Counter[str] = Counter()
        self.status = 200
        self.discovery_issuer: str | None = None  # overrides the `issuer` of discovery documents

    def reset(self) -> None:
        self.keys.clear()
        self.requests.clear()
        self.status = 200
        self.discovery_issuer = None

    def issuer(self, name: str) -> str:
        return f"{self.base}/{name}"

    def jwks_url(self, name: str) -> str:
        return f"{self.base}/{name}/jwks"

    def discovery_url(self, name: str) -> str:
        return f"{self.base}/{name}/.well-known/openid-configuration"

    def respond(self, path: str) -> tuple[int, object]:
        self.requests[path] += 1
        name, _, rest = path.strip("/").partition("/")
        if self.status != 200 or name not in self.keys:
            return (self.status if self.status != 200 else 404), {"error": "no"}
        if rest == "jwks":
            return 200, {"keys": self.keys[name]}
        if rest == ".well-known/openid-configuration":
            issuer = self.discovery_issuer or self.issuer(name)
            return 200, {"issuer": issuer, "jwks_uri": self.jwks_url(name)}
        return 404, {"error": "no"}


@contextmanager
def serve() -> Iterator[IdentityProvider]:
    """Run an IdentityProvider on a free port for the duration of the block."""
    provider = IdentityProvider()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
            status, document = provider.respond(self.path)
            body = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    provider.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        server.shutdown()
        server.server_close()


class Keys:
    def __init__(self) -> None:
        self.rsa1 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.rsa2 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec1 = ec.generate_private_key(ec.SECP256R1())


def public_jwk(private_key: Any, kid: str | None, **extra: Any) -> dict[str, Any]:
    public = private_key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        data = jwt.algorithms.RSAAlgorithm.to_jwk(public, as_dict=True)
    else:
        data = jwt.algorithms.ECAlgorithm.to_jwk(public, as_dict=True)
    if kid is not None:
        data["kid"] = kid
    return {**data, "use": "sig", **extra}


def sign(private_key: Any, *, iss: str, kid: str | None = "rsa1", alg: str = "RS256", **claims: Any) -> str:
    now = int(time.time())
    payload = {"iss": iss, "aud": AUDIENCE, "sub": "user-1", "iat": now, "exp": now + 300, **claims}
    payload = {name: value for name, value in payload.items() if value is not None}
    return jwt.encode(payload, private_key, algorithm=alg, headers={"kid": kid} if kid else None)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(header: dict[str, Any], payload: dict[str, Any], secret: bytes | None = None) -> str:
    signing_input = b64(json.dumps(header).encode()) + "." + b64(json.dumps(payload).encode())
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest() if secret else b""
    return signing_input + "." + b64(signature)
