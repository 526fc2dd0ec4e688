"""`Subscriber` grants the Subscription resources the caller created (https://hl7.org/fhir/R4/subscription.html).

A Subscription belongs to no compartment, so no compartment validator reaches it; this one lets a
role see and manage its own subscriptions and nobody else's. "The caller's own" is decided as the
delivery worker decides whose rules a notification follows: the identity behind the credential that
created it (a Patient's subscriptions stay theirs whichever of their tokens asks), or, for a
credential without an identity, that same credential (subscriptions/state.py records it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.apps import apps
from django.db.models import Q

from .base import NOTHING, Validator

if TYPE_CHECKING:
    from authz.context import AccessContext


class Subscriber(Validator):
    name = "Subscriber"

    def narrowing(self, ctx: AccessContext, resource_type: str) -> Q | None:
        if resource_type not in ("Subscription", "*"):
            return NOTHING
        from subscriptions.state import subscriber_fields  # the app records what this compares

        states = apps.get_model("subscriptions", "SubscriptionState").objects
        if ctx.identity:
            mine = states.filter(subscriber_identity=ctx.identity)
        else:
            fields = subscriber_fields(ctx)
            mine = states.filter(
                subscriber_identity="",
                credential_kind=fields["credential_kind"],
                credential_ref=fields["credential_ref"],
            )
        return Q(resource_type="Subscription", pk__in=mine.values("resource_pk"))
