"""Notifications and subscription status through the door.

`notify` is one notification leaving the server: the subscriber's read of the event's version,
decided and shaped as the subscriber's rules say at delivery time (subscriptions/notification.py),
and recorded in the audit log like any read (operation `notify`, the subscriber as the caller, the
rule that allowed it). A refusal answers like a missing resource: the worker withholds the
notification, and the subscriber learns nothing.

`subscription_status` is `GET Subscription/[id]/$status`: it needs `read` on that Subscription.
"""

from __future__ import annotations

from authz.context import AccessContext
from resources import selectors
from resources.outcomes import not_found
from resources.services import Stored
from subscriptions import notification, status
from subscriptions.models import Delivery

from .door import interaction


@interaction("notify")
def notify(ctx: AccessContext, *, resource_type: str, fhir_id: str, delivery: Delivery) -> Stored:
    shown = notification.shaped(ctx, delivery)
    if shown is None:
        raise not_found(f"{resource_type}/{fhir_id} is not known")
    return shown


@interaction("read")
def subscription_status(ctx: AccessContext, *, resource_type: str, fhir_id: str) -> dict:
    stored = selectors.resource_read(ctx, resource_type="Subscription", fhir_id=fhir_id)
    return status.bundle(stored)
