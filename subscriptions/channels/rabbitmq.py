"""A FHIR message published to RabbitMQ over AMQP 0-9-1 (https://www.rabbitmq.com/tutorials/amqp-concepts),
the `amqp://` and `amqps://` destinations of the message channel (channels/message.py documents the
endpoint form, the message properties and what is declared).

kombu (with py-amqp) resolves and connects by itself, so the host is resolved here through the
allow-list and kombu is given the admitted address, never the name: a name that resolves elsewhere
between the check and the connection cannot slip through. With amqps the TLS certificate is still
checked against the name. kombu's reconnection retries are off (one attempt per call); publisher
confirms make the broker's refusal (unroutable message, missing exchange, nack) this attempt's error.
"""

from __future__ import annotations

import ssl
import time
from urllib.parse import unquote, urlsplit

import amqp.exceptions
from kombu import Connection, Producer
from kombu.exceptions import KombuError

from .. import endpoints
from . import message
from .base import Notification, Outcome


def publish(notification: Notification, body: bytes, timeout: float) -> Outcome:
    parts = urlsplit(notification.endpoint)
    params = message.parameters(notification.endpoint)
    exchange = params.get("exchange", "")
    routing_key = params.get("routing_key", "")
    if not exchange and not routing_key:
        return Outcome(False, error="an AMQP endpoint names an exchange or a queue (routing_key)")
    secure = parts.scheme == "amqps"
    started = time.monotonic()
    try:
        port = parts.port or (5671 if secure else 5672)
        address = endpoints.addresses(parts.hostname, port)[0][4][0]
    except endpoints.EndpointRefused as exc:
        return Outcome(False, error=str(exc))
    except ValueError:
        return Outcome(False, error="an AMQP endpoint's port is a number")
    userid, password = message.credentials(notification.endpoint)
    connection = Connection(
        hostname=f"[{address}]" if ":" in address else address,
        port=port,
        userid=userid or "guest",
        password=password or "guest",
        virtual_host=_vhost(parts.path),
        ssl={
            "context": {"purpose": ssl.Purpose.SERVER_AUTH, "check_hostname": True},
            "server_hostname": parts.hostname,
        }
        if secure
        else False,
        connect_timeout=timeout,
        transport_options={"confirm_publish": True, "read_timeout": timeout, "write_timeout": timeout},
    )
    try:
        connection.ensure_connection(max_retries=0)  # one attempt: retrying is the worker's
        channel = connection.channel()
        if not exchange:
            channel = _queue(connection, channel, routing_key)
        Producer(channel).publish(
            body,
            exchange=exchange,
            routing_key=routing_key,
            content_type="application/fhir+json",
            content_encoding="utf-8",
            delivery_mode=2,  # persistent
            message_id=notification.key,
            headers={
                "subscription": f"Subscription/{notification.subscription_id}",
                "event-number": notification.number,
            },
            mandatory=True,
            retry=False,
            timeout=timeout,
        )
    except (KombuError, amqp.exceptions.AMQPError, OSError) as exc:
        elapsed = int((time.monotonic() - started) * 1000)
        return Outcome(False, latency_ms=elapsed, error=f"{type(exc).__name__}: {exc}"[:500])
    finally:
        connection.release()
    return Outcome(True, latency_ms=int((time.monotonic() - started) * 1000))


def _vhost(path: str) -> str:
    # kombu's convention: no path or "/" is the default vhost "/", "/%2F" and "//" also spell it.
    return unquote(path[1:]) if len(path) > 1 else "/"


def _queue(connection: Connection, channel, name: str):
    """The channel to publish on, with the queue `name` existing (declared durable if it did not)."""
    try:
        channel.queue_declare(queue=name, passive=True)
        return channel
    except amqp.exceptions.NotFound:
        # The broker closed that channel on the 404; a fresh one declares the queue.
        channel = connection.channel()
        channel.queue_declare(queue=name, durable=True, auto_delete=False)
        return channel
