"""One HTTP request to a receiver, through the allow-list, with the headers every delivery carries.

Every HTTP delivery (rest-hook, FHIR messages to an http(s) endpoint) carries:
- `X-FHIR-Idempotency-Key`: the same on every attempt of one notification, different between
  notifications, so a receiver can drop duplicates (delivery is at least once);
- `X-FHIR-Event-Number`: the subscription's event number (eventsSinceSubscriptionStart);
- `X-FHIR-Signature: t=<unix seconds>,sha256=<hex>` when FHIR_SUBSCRIPTION_SIGNING_KEY is set: an
  HMAC-SHA256 under that key of `<t>.<idempotency key>.<body>`, so a receiver can check that the
  request comes from this server, is recent, and is the notification the key names.

The connection goes to an address the allow-list admits (endpoints.connect), redirects are not
followed, and a response counts as delivered when its status is 2xx.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ssl
import time
from urllib.parse import urlsplit

from django.conf import settings

from .. import endpoints
from .base import Outcome

USER_AGENT = "fhirplatform-subscriptions"


def signature(key: str, timestamp: int, idempotency_key: str, body: bytes) -> str:
    mac = hmac.new(key.encode(), f"{timestamp}.{idempotency_key}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},sha256={mac.hexdigest()}"


class _Connection(http.client.HTTPConnection):
    def connect(self) -> None:
        self.sock = endpoints.connect(self.host, self.port, self.timeout)


class _SecureConnection(http.client.HTTPSConnection):
    def connect(self) -> None:
        sock = endpoints.connect(self.host, self.port, self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def request(
    method: str,
    url: str,
    *,
    body: bytes,
    content_type: str | None,
    headers: tuple[str, ...],
    key: str,
    number: int,
    timeout: float,
) -> Outcome:
    """Send one request; never raises for the receiver's failures (they are the Outcome's error)."""
    parts = urlsplit(url)
    if len(body) > settings.FHIR_SUBSCRIPTION_MAX_PAYLOAD:
        return Outcome(False, error=f"payload of {len(body)} bytes exceeds FHIR_SUBSCRIPTION_MAX_PAYLOAD")
    sent = {"User-Agent": USER_AGENT, "X-FHIR-Idempotency-Key": key, "X-FHIR-Event-Number": str(number)}
    for line in headers:
        name, _, value = line.partition(":")
        sent[name.strip()] = value.strip()
    if content_type and body:
        sent["Content-Type"] = content_type
    if settings.FHIR_SUBSCRIPTION_SIGNING_KEY:
        sent["X-FHIR-Signature"] = signature(
            settings.FHIR_SUBSCRIPTION_SIGNING_KEY, int(time.time()), key, body
        )
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if parts.scheme == "https":
            connection: http.client.HTTPConnection = _SecureConnection(
                parts.hostname, port, timeout=timeout, context=ssl.create_default_context()
            )
        else:
            connection = _Connection(parts.hostname, port, timeout=timeout)
    except ValueError as exc:
        return Outcome(False, error=f"invalid endpoint: {exc}")
    started = time.monotonic()
    try:
        connection.request(method, path, body=body or None, headers=sent)
        response = connection.getresponse()
        response.read(64 * 1024)  # drained, not kept: the receiver's answer is not ours to store
        status = response.status
    except endpoints.EndpointRefused as exc:
        return Outcome(False, error=str(exc))
    except (OSError, http.client.HTTPException) as exc:
        elapsed = int((time.monotonic() - started) * 1000)
        return Outcome(False, latency_ms=elapsed, error=f"{type(exc).__name__}: {exc}"[:500])
    finally:
        connection.close()
    elapsed = int((time.monotonic() - started) * 1000)
    if 200 <= status < 300:
        return Outcome(True, status_code=status, latency_ms=elapsed)
    return Outcome(False, status_code=status, latency_ms=elapsed, error=f"HTTP {status}")
