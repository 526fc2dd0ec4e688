"""bind: a WebSocket client binds to a Subscription (https://hl7.org/fhir/R4/subscription.html#2.46.7.2),
through the door.

Binding needs `read` on that Subscription, so it is decided, shaped and audited exactly as a read of
it (one audit row, operation `read`, transport `websocket`); a Subscription the caller may not read
fails exactly as a missing one does. The Subscription's `channel.type`, as the caller's read shows
it, must be `websocket`.

With a cursor (the subscription's event number, `Delivery.number`, also
`events-since-subscription-start` in `$status`) the answer also lists the numbers of the
notifications delivered after it, oldest first, at most `limit` of them: the pings the client
missed while it was away (docs/subscriptions.md, "WebSocket"). Only delivered notifications count:
one withheld (the subscriber may no longer read what changed) or still pending was never sent.

A socket outlives the moment it authenticated, so `caller_of` records who its caller is without
their secret (as a Subscription records its subscriber) and `caller_alive` tells later whether that
caller still is one (subscriptions/subscriber.py: the API token neither revoked nor expired, the
identity not deleted, the OAuth client still configured...).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from authz.context import AccessContext, Origin
from resources import selectors
from resources.outcomes import error
from subscriptions import subscriber
from subscriptions.models import Delivery, SubscriptionState
from subscriptions.state import subscriber_fields

from .door import interaction


@dataclass(frozen=True)
class Binding:
    fhir_id: str
    missed: tuple[int, ...]  # event numbers after the cursor, oldest first
    more: bool  # more than `limit` were missed: bind again from the last one


@interaction("read")
def bind(
    ctx: AccessContext, *, resource_type: str, fhir_id: str, cursor: int | None = None, limit: int = 1000
) -> Binding:
    if resource_type != "Subscription":
        raise error(400, "not-supported", "Only a Subscription can be bound")
    stored = selectors.resource_read(ctx, resource_type=resource_type, fhir_id=fhir_id)
    channel = json.loads(stored.body).get("channel") or {}
    if channel.get("type") != "websocket":
        raise error(
            422,
            "business-rule",
            f"Subscription/{fhir_id} is not a websocket subscription (channel.type "
            f"'{channel.get('type') or ''}')",
        )
    if cursor is None:
        return Binding(fhir_id, (), False)
    numbers = list(
        Delivery.objects.filter(subscription__fhir_id=fhir_id, state=Delivery.DELIVERED, number__gt=cursor)
        .order_by("number")
        .values_list("number", flat=True)[: limit + 1]
    )
    return Binding(fhir_id, tuple(numbers[:limit]), len(numbers) > limit)


def caller_of(ctx: AccessContext) -> dict:
    return subscriber_fields(ctx)


def caller_alive(caller: dict) -> bool:
    state = SubscriptionState(**caller)  # never saved: the shape subscriber.context reads
    return subscriber.context(state, request_id="websocket-recheck", origin=Origin("websocket")) is not None
