"""The Subscription resource's write hook: what every write of a Subscription keeps server-side.

Registered for the type `Subscription` (resources/hooks.py), so it runs inside the write's
transaction, whatever the transport: the body is checked (definition.py), stored with its header
values masked and its status as the server sets it, and `SubscriptionState` follows the resource.
The subscriber is recorded when the subscription is created and kept on later updates (whoever
changes it, notifications stay decided by the rules of the one who subscribed).
"""

from __future__ import annotations

import copy

from django.conf import settings
from django.utils import timezone

from authz.context import AccessContext
from resources import hooks
from resources.outcomes import error

from . import definition
from .models import Delivery, SubscriptionState


def _prepare(ctx: AccessContext, body: dict, previous: dict | None) -> tuple[dict, object]:
    kept = []
    if body.get("id"):
        row = SubscriptionState.objects.filter(fhir_id=body["id"]).only("headers").first()
        kept = row.headers if row is not None else []
    parsed = definition.parse(ctx, body, kept)
    stored = copy.deepcopy(body)
    stored["status"] = parsed.status
    if parsed.status != "error":
        stored.pop("error", None)
    if parsed.headers:
        stored["channel"]["header"] = definition.masked(parsed.headers)
    return stored, (parsed, stored.get("error", ""))


def _stored(ctx: AccessContext, one, note) -> None:
    parsed, error_text = note
    fields = {
        "fhir_id": one.fhir_id,
        "status": parsed.status,
        "error": error_text,
        "criteria": parsed.criteria,
        "criteria_type": parsed.criteria_type,
        "channel_type": parsed.channel_type,
        "endpoint": parsed.endpoint,
        "payload": parsed.payload,
        "headers": parsed.headers,
        "end": parsed.end,
    }
    row = SubscriptionState.objects.filter(resource_pk=one.pk).first()
    if row is None or row.status == SubscriptionState.DELETED:
        fields.update(subscriber_fields(ctx))
        _within_limit(fields)
        if row is not None:
            # Deleted, then created again with the same id: a new subscription, numbered from 0, and
            # nothing of the old one replayed.
            fields["events_since_start"] = 0
            Delivery.objects.filter(subscription=row).delete()
    if row is None:
        SubscriptionState.objects.create(resource_pk=one.pk, **fields)
    else:
        fields["updated"] = timezone.now()
        SubscriptionState.objects.filter(pk=row.pk).update(**fields)


def _within_limit(subscriber: dict) -> None:
    held = SubscriptionState.objects.exclude(status=SubscriptionState.DELETED).filter(
        subscriber_identity=subscriber["subscriber_identity"],
        **(
            {}
            if subscriber["subscriber_identity"]
            else {
                "credential_kind": subscriber["credential_kind"],
                "credential_ref": subscriber["credential_ref"],
            }
        ),
    )
    limit = settings.FHIR_SUBSCRIPTION_MAX_PER_SUBSCRIBER
    if held.count() >= limit:
        raise error(
            422,
            "too-costly",
            f"A subscriber may hold at most {limit} subscriptions (FHIR_SUBSCRIPTION_MAX_PER_SUBSCRIBER); "
            "delete some first",
        )


def _deleted(ctx: AccessContext, resource_type: str, fhir_id: str, pk: int) -> None:
    SubscriptionState.objects.filter(resource_pk=pk).update(
        status=SubscriptionState.DELETED, updated=timezone.now()
    )


def subscriber_fields(ctx: AccessContext) -> dict:
    """Who subscribes, as enough to decide their access again later without their secret."""
    if ctx.method == "api-token":
        kind, ref = "api-token", ctx.credential.removeprefix("api-token:").split(" ", 1)[0]
    elif ctx.method == "oauth" and ctx.user:
        kind, ref = "oauth-user", ctx.subject
    elif ctx.method == "oauth":
        kind, ref = "oauth-client", ctx.client_id
    elif ctx.method == "jwt":
        kind, ref = "jwt", f"{ctx.issuer}|{ctx.subject}"
    else:
        kind, ref = "system", ctx.request_id
    # The SMART ceiling the credential carried, kept as scope text ("-": a ceiling granting nothing).
    scopes = "" if ctx.scopes is None else " ".join(sorted(g.as_text() for g in ctx.scopes.grants)) or "-"
    return {
        "subscriber_role": ctx.role,
        "subscriber_identity": ctx.identity or "",
        "credential_kind": kind,
        "credential_ref": ref[:300],
        "subscriber_scopes": scopes,
    }


def register() -> None:
    hooks.register_type("Subscription", hooks.TypeHook(prepare=_prepare, stored=_stored, deleted=_deleted))
