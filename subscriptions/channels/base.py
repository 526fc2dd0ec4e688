"""What every channel is given and what it answers."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Notification:
    """One notification, decided and shaped for its subscriber.

    `body` is the resource as the subscriber's read shows it (property filters applied), or None
    when the subscription asked for no payload (`channel.payload` absent) or for a delete.
    """

    subscription_id: str  # the Subscription's FHIR id
    channel_type: str
    endpoint: str
    payload: str  # "" or a MIME type (application/fhir+json)
    headers: tuple[str, ...]  # "Name: value", in clear: never log them
    action: str  # create, update, delete
    resource_type: str
    fhir_id: str
    version: int
    number: int  # the subscription's event number (eventsSinceSubscriptionStart)
    key: str  # idempotency key, the same on every attempt of this notification
    base_url: str  # this server's FHIR base, for fullUrls and message sources
    body: str | None = None
    timestamp: str = ""  # when the change was committed (instant)


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status_code: int | None = None
    latency_ms: int | None = None
    error: str = ""
    extra: dict = field(default_factory=dict)
