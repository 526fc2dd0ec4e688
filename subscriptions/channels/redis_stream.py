"""A FHIR message appended to a Redis Stream (https://redis.io/docs/latest/commands/xadd/), the
`redis://` and `rediss://` destinations of the message channel (channels/message.py documents the
endpoint form and the fields).

The connection is opened by endpoints.connect, so it reaches only an address the allow-list admits,
and redis-py's own retries are off: a dead receiver costs one `timeout`, and retrying is the worker's
business (with back-off, recorded per attempt).
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .. import endpoints
from . import message
from .base import Notification, Outcome


class _Connection(redis.Connection):
    def _connect(self):
        sock = endpoints.connect(self.host, self.port, self.socket_connect_timeout)
        sock.settimeout(self.socket_timeout)
        return sock


class _SecureConnection(redis.SSLConnection, _Connection):
    """TLS over the vetted socket (SSLConnection wraps what _Connection._connect returns)."""


def append(notification: Notification, body: bytes, timeout: float) -> Outcome:
    parts = urlsplit(notification.endpoint)
    stream = message.parameters(notification.endpoint).get("stream")
    if not stream:
        return Outcome(False, error="a Redis endpoint names its stream: redis://host:port/db?stream=NAME")
    try:
        db = int(parts.path.strip("/") or 0)
        port = parts.port or 6379
    except ValueError:
        return Outcome(False, error="a Redis endpoint's port and database are numbers")
    username, password = message.credentials(notification.endpoint)
    options = {
        "host": parts.hostname,
        "port": port,
        "db": db,
        "username": username,
        "password": password,
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 0),
    }
    if parts.scheme == "rediss":
        pool = redis.ConnectionPool(connection_class=_SecureConnection, ssl_check_hostname=True, **options)
    else:
        pool = redis.ConnectionPool(connection_class=_Connection, **options)
    client = redis.Redis(connection_pool=pool)
    started = time.monotonic()
    try:
        entry = client.xadd(
            stream,
            {
                "key": notification.key,
                "subscription": f"Subscription/{notification.subscription_id}",
                "event": str(notification.number),
                "action": notification.action,
                "bundle": body,
            },
        )
    except endpoints.EndpointRefused as exc:
        return Outcome(False, error=str(exc))
    except (redis.RedisError, OSError) as exc:
        elapsed = int((time.monotonic() - started) * 1000)
        return Outcome(False, latency_ms=elapsed, error=f"{type(exc).__name__}: {exc}"[:500])
    finally:
        pool.disconnect()
    elapsed = int((time.monotonic() - started) * 1000)
    return Outcome(True, latency_ms=elapsed, extra={"stream_entry": entry.decode()})
