"""FHIR message delivery (channel type `message`, https://hl7.org/fhir/R4/subscription.html#2.46.7.4)
as an R4 FHIR message (https://hl7.org/fhir/R4/messaging.html).

The message is a Bundle of type `message`:
- `Bundle.id` is the notification's idempotency key (a UUID, the same on every attempt, different
  between notifications), `Bundle.identifier` is `urn:uuid:<key>` and `Bundle.timestamp` the moment
  the change was committed (the moment the bundle was built if that is unknown). Receivers de-duplicate
  on the identifier, as messaging.html#reliable asks them to.
- The first entry is a MessageHeader (id: a UUID derived from the key, so it is stable across attempts
  too; fullUrl `urn:uuid:<that id>`), whose
  - `eventCoding` is `create`, `update` or `delete` from http://hl7.org/fhir/restful-interaction: R4
    has no event code for "a subscription fired", and what happened to the focus resource is the
    restful interaction that changed it, a code every R4 receiver can look up;
  - `source.endpoint` is this server's FHIR base, `source.software` the server's name;
  - `destination.endpoint` is the subscription's endpoint without credentials: no user or password,
    and for http(s) no query string or fragment (where tokens travel); for redis/amqp only the
    `stream`, `exchange` and `routing_key` parameters are kept;
  - `focus` references the resource by absolute URL (`[base]/Type/id`), which is also the fullUrl of
    the resource's entry when there is one, so the reference resolves inside the bundle.
- Then the resource itself, as the subscriber's read shows it, when the notification carries a body
  (the subscription asked for a payload and the event is not a delete). Without one, the receiver
  reads the focus with its own credentials.

The subscription and its event number travel beside the bundle, in each destination's own metadata
(they are facts about the delivery, not about the message: R4's MessageHeader has no element for them).

Destinations, by the endpoint URL (the forms endpoints.py checks):
- `http://...`, `https://...`: the bundle is POSTed to the URL as `application/fhir+json`, the way
  `$process-message` receives a message (the URL is used as given, typically `[base]/$process-message`),
  through channels/http.py: allow-list, `channel.header` values, idempotency key, event number and
  signature headers, plus `X-FHIR-Subscription: Subscription/<id>`. A 2xx answer is delivered.
- `redis://[user:password@]host[:port][/db]?stream=NAME` (and `rediss://` for TLS): XADD to the Redis
  Stream NAME with the fields `key` (idempotency key), `subscription` (`Subscription/<id>`), `event`
  (event number), `action`, `bundle` (the JSON text). Port 6379 and db 0 by default. The stream is not
  trimmed: its consumers own its length (XTRIM, or MAXLEN on their side).
- `amqp://[user:password@]host[:port][/vhost]?exchange=NAME&routing_key=KEY` (and `amqps://`): the bundle
  is published to RabbitMQ as a persistent message (content type `application/fhir+json`, `message_id`
  the idempotency key, headers `subscription` and `event-number`), with publisher confirms and the
  `mandatory` flag, so a broker that drops or cannot route it makes the attempt fail instead of losing
  it silently. Port 5672 (amqps 5671) and vhost `/` by default (an empty path is `/`; `%2F` spells `/`
  when other segments follow). With `exchange`, the message goes to that exchange with `routing_key`
  (empty if absent); the exchange must exist (nothing is declared on the user's behalf). Without
  `exchange`, it goes through the default exchange to the queue named by `routing_key`; that queue is
  declared (durable) when it does not exist yet, so the first notification is not dropped before the
  consumer has started. An existing queue is used as it is, whatever its arguments.
Every connection is made to an address the allow-list admits, with `timeout` for connecting, reading
and writing. The encoded bundle may not exceed FHIR_SUBSCRIPTION_MAX_PAYLOAD on any destination.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from urllib.parse import parse_qs, unquote, urlencode, urlsplit, urlunsplit

from django.conf import settings

from resources import fhirjson

from . import http
from .base import Notification, Outcome

CONTENT_TYPE = "application/fhir+json; fhirVersion=4.0"
SOFTWARE = "fhirplatform"
_HEADER_IDS = uuid.UUID("5b0c9b8e-4f0e-4b7a-9a57-2f4d2a1c7e31")  # namespace of MessageHeader ids
_KEPT_PARAMETERS = ("stream", "exchange", "routing_key")


def send(notification: Notification, timeout: float) -> Outcome:
    body = fhirjson.dumps(bundle(notification)).encode()
    if len(body) > settings.FHIR_SUBSCRIPTION_MAX_PAYLOAD:
        return Outcome(False, error=f"payload of {len(body)} bytes exceeds FHIR_SUBSCRIPTION_MAX_PAYLOAD")
    scheme = urlsplit(notification.endpoint).scheme
    if scheme in ("http", "https"):
        return http.request(
            "POST",
            notification.endpoint,
            body=body,
            content_type=CONTENT_TYPE,
            headers=(
                *notification.headers,
                f"X-FHIR-Subscription: Subscription/{notification.subscription_id}",
            ),
            key=notification.key,
            number=notification.number,
            timeout=timeout,
        )
    if scheme in ("redis", "rediss"):
        from . import redis_stream

        return redis_stream.append(notification, body, timeout)
    if scheme in ("amqp", "amqps"):
        from . import rabbitmq

        return rabbitmq.publish(notification, body, timeout)
    return Outcome(
        False, error=f"a message endpoint must be an http(s), redis(s) or amqp(s) URL, not '{scheme}'"
    )


def bundle(notification: Notification) -> dict:
    """The FHIR message for one notification (a dict, ready for fhirjson.dumps)."""
    n = notification
    base = n.base_url.rstrip("/")
    focus = f"{base}/{n.resource_type}/{n.fhir_id}"
    header_id = str(uuid.uuid5(_HEADER_IDS, n.key))
    header = {
        "resourceType": "MessageHeader",
        "id": header_id,
        "eventCoding": {
            "system": "http://hl7.org/fhir/restful-interaction",
            "code": n.action,
            "display": n.action,
        },
        "destination": [{"endpoint": public_endpoint(n.endpoint)}],
        "source": {"software": SOFTWARE, "endpoint": base},
        "focus": [{"reference": focus}],
    }
    entries = [{"fullUrl": f"urn:uuid:{header_id}", "resource": header}]
    if n.body is not None:
        entries.append({"fullUrl": focus, "resource": fhirjson.loads(n.body)})
    return {
        "resourceType": "Bundle",
        "id": n.key,
        "identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{n.key}"},
        "type": "message",
        "timestamp": n.timestamp or fhirjson.instant(datetime.now(UTC)),
        "entry": entries,
    }


def public_endpoint(endpoint: str) -> str:
    """The endpoint as the message may show it: no credentials (see the module docstring)."""
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:  # checked when the subscription was written; never a reason to crash here
        port = None
    netloc = host + (f":{port}" if port else "")
    if parts.scheme in ("http", "https"):
        query = ""
    else:
        kept = [(name, value) for name, value in _query(parts.query).items() if name in _KEPT_PARAMETERS]
        query = urlencode(kept)
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _query(text: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(text).items()}


def credentials(endpoint: str) -> tuple[str | None, str | None]:
    parts = urlsplit(endpoint)
    return (
        unquote(parts.username) if parts.username else None,
        unquote(parts.password) if parts.password else None,
    )


def parameters(endpoint: str) -> dict[str, str]:
    return _query(urlsplit(endpoint).query)
