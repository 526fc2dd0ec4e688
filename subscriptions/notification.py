"""Whether a subscriber may be notified of one event, and what the notification may show.

A notification is a read of the event's version by the subscriber, in the subscriber's own rules as
they are at delivery time:

- the subscriber must still hold `subscribe` on the criteria's type;
- the version (for a delete, the last version with content) must match the criteria as the
  subscriber's search would see it (chains reach only what the subscriber may see);
- the subscriber's `read` must allow that version, decided on its own content as vread and history
  decide it (resources/versions.py), and its property filters shape the payload.

Anything else is the same answer as no event at all (None): a subscriber learns nothing about a
resource it may not read, not even that it exists, and the check costs the same either way.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from django.db import connection
from django.db.models import Q

from audit.services import note_results, note_rule
from authz import rules
from authz.context import SYSTEM, AccessContext
from resources import fhirjson, versions
from resources.models import Resource, ResourceVersion
from resources.outcomes import FhirError
from resources.search import access
from resources.search.criteria import build_criteria
from resources.services import Stored

from .models import Delivery

_VERSIONS = ResourceVersion._meta.db_table
_CONTENT_SQL = (
    f"SELECT body, last_updated, version FROM {_VERSIONS} WHERE resource_id = %s AND version <= %s "
    "AND body IS NOT NULL ORDER BY version DESC LIMIT 1"
)


def shaped(ctx: AccessContext, delivery: Delivery) -> Stored | None:
    """The event's version as the subscriber may see it, or None when it may not be notified."""
    state = delivery.subscription
    rules.authorize(ctx, "subscribe", state.criteria_type)
    with connection.cursor() as cursor:
        cursor.execute(_CONTENT_SQL, [delivery.resource_pk, delivery.version])
        found = cursor.fetchone()
    if found is None:
        return None
    text, last_updated, version = found
    body = fhirjson.loads(text)
    current = (
        Resource.objects.system("subscription delivery: is the event's version still current")
        .filter(pk=delivery.resource_pk, version=delivery.version, deleted=False)
        .exists()
    )
    if current:
        rule = _decide(ctx, delivery, state.criteria, body)
    else:
        with versions.standing_in(
            ctx, delivery.resource_type, delivery.fhir_id, delivery.resource_pk, text, body
        ) as scratch:
            rule = _decide(scratch, delivery, state.criteria, body)
    if rule is False:
        return None
    if rule is not None:
        note_rule(ctx, rule.name, rule.property_filters)
    stored = Stored(
        delivery.resource_type,
        delivery.fhir_id,
        version,
        last_updated,
        rules.shape(rule, text),
        pk=delivery.resource_pk,
    )
    note_results(ctx, [stored])
    return stored


def _decide(ctx: AccessContext, delivery: Delivery, criteria: str, body: dict):
    """The read rule that allows the version (None for the system scope), or False."""
    resource_type, _, query = criteria.partition("?")
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        try:
            compiled = build_criteria(
                resource_type,
                pairs,
                strict=True,
                rows=access.reachable(ctx, "subscribe"),
                guard=access.guard(ctx, "subscribe"),
            )
        except FhirError:
            return False  # the subscriber's rules no longer let it ask this
        # Criteria on the resource's own values matched this very version when the event was
        # dispatched; only chains and _has see other resources, and through the subscriber's view.
        if _reaches_others(pairs):
            matched = (
                Resource.objects.system("subscription delivery: the criteria as the subscriber's search")
                .filter(Q(pk=delivery.resource_pk) & compiled.q)
                .exists()
            )
            if not matched:
                return False
    if ctx.role == SYSTEM:
        return None
    rule = rules.decide(ctx, "read", resource_type, delivery.resource_pk, lambda: body)
    return False if rule is None else rule


def _reaches_others(pairs: list[tuple[str, str]]) -> bool:
    """Whether the criteria follow references to other resources (chains, `_has`)."""
    return any("." in name or name.startswith("_has") for name, _ in pairs)
