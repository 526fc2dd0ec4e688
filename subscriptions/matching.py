"""Matching outbox events against active subscriptions: which deliveries each event owes.

Each event is matched by evaluating every candidate subscription's criteria against the event's own
version (for a delete: the last version that had content), whatever the resource became since:
the version is the current row when it still is, and otherwise stands in as the current state
inside a rolled-back savepoint (resources/versions.py), so the search engine evaluates every
criterion, chains included, exactly as a search would have at the time.

Matching here is the platform's, in the system scope, and only decides that a notification is owed:
whether the subscriber may see it, and what it may see, is decided at delivery by the door with the
subscriber's own rules as they are then (interactions/notify.py). The system scope sees everything,
so nothing the subscriber could be shown is missed here.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from functools import lru_cache

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.crypto import salted_hmac

from authz.context import AccessContext
from resources import fhirjson, versions
from resources.models import Resource, ResourceVersion
from resources.outcomes import FhirError
from resources.search.conditional import criteria_filter, parse_criteria

from . import outbox, prefilter
from .models import Delivery, Event, SubscriptionState


def _system() -> AccessContext:
    # A fresh context each time: a context's memo must not outlive one piece of work in a worker.
    return AccessContext.system("subscription matching")


_VERSIONS = ResourceVersion._meta.db_table
_LAST_CONTENT_SQL = (
    f"SELECT body FROM {_VERSIONS} WHERE resource_id = %s AND version < %s "
    "AND body IS NOT NULL ORDER BY version DESC LIMIT 1"
)
_VERSION_SQL = f"SELECT body FROM {_VERSIONS} WHERE resource_id = %s AND version = %s"


def idempotency_key(event_id: int, state_pk: int) -> str:
    """The same key for the same (event, subscription) however often it is dispatched or attempted;
    keyed with the server's secret, so a receiver cannot count back to the server's event numbers
    (which would show how much happened that it was not told of)."""
    digest = salted_hmac("subscriptions.idempotency-key", f"{event_id}/{state_pk}", algorithm="sha256")
    return str(uuid.UUID(digest.hexdigest()[:32]))


def dispatch(limit: int = 500) -> list[int]:
    """Match the oldest pending events; returns the ids of the deliveries created. Safe to run in
    several workers at once (PostgreSQL skips events another worker holds; a delivery is unique per
    event and subscription)."""
    with transaction.atomic():
        pending = Event.objects.filter(dispatched=False).order_by("id")
        if connection.features.has_select_for_update_skip_locked:
            pending = pending.select_for_update(skip_locked=True)
        events = list(pending[:limit])
        if not events:
            return []
        now = timezone.now()
        candidates: dict[str, list[SubscriptionState]] = defaultdict(list)
        for state in SubscriptionState.objects.filter(
            status=SubscriptionState.ACTIVE, criteria_type__in={e.resource_type for e in events}
        ).filter(Q(end__isnull=True) | Q(end__gt=now)):
            candidates[state.criteria_type].append(state)
        created: list[int] = []
        for event in events:
            states = candidates.get(event.resource_type)
            if states:
                for state in _matching(event, states):
                    created.append(_owe(event, state, now))
        outbox.consume(events)
        Event.objects.filter(pk__in=[e.pk for e in events]).update(dispatched=True)
    return [pk for pk in created if pk]


def _owe(event: Event, state: SubscriptionState, now) -> int:
    if Delivery.objects.filter(subscription=state, event_id=event.pk).exists():
        return 0  # dispatched before, by a worker that stopped before marking the event
    return Delivery.objects.create(
        subscription=state,
        event_id=event.pk,
        action=event.action,
        resource_type=event.resource_type,
        fhir_id=event.fhir_id,
        version=event.version,
        resource_pk=event.resource_pk,
        key=idempotency_key(event.pk, state.pk),
        next_attempt=now,
    ).pk


def _matching(event: Event, states: list[SubscriptionState]) -> list[SubscriptionState]:
    text = _content(event)
    if text is None:
        return []
    body = fhirjson.loads(text)
    rows = prefilter.rows_of(event.resource_type, body)
    by_criteria: dict[str, list[SubscriptionState]] = defaultdict(list)
    for state in states:
        if prefilter.may_match(state.criteria, event.fhir_id, rows):
            by_criteria[state.criteria].append(state)
    if not by_criteria:
        return []
    current = (
        Resource.objects.system("subscription matching")
        .filter(pk=event.resource_pk, version=event.version, deleted=False)
        .exists()
    )
    if current:
        return _evaluate(event, by_criteria)
    with versions.standing_in(_system(), event.resource_type, event.fhir_id, event.resource_pk, text, body):
        return _evaluate(event, by_criteria)


def _evaluate(event: Event, by_criteria: dict[str, list[SubscriptionState]]) -> list[SubscriptionState]:
    found: list[SubscriptionState] = []
    for criteria, states in by_criteria.items():
        condition = _condition(criteria)
        if condition is None:
            continue
        matched = (
            Resource.objects.system("subscription matching")
            .filter(pk=event.resource_pk)
            .filter(condition)
            .exists()
        )
        if matched:
            found.extend(states)
    return found


@lru_cache(maxsize=1024)
def _condition(criteria: str) -> Q | None:
    """The criteria as a condition on Resource rows (None: they no longer compile, match nothing)."""
    resource_type, _, query = criteria.partition("?")
    if not query:
        return Q(resource_type=resource_type, deleted=False)
    try:
        return criteria_filter(_system(), resource_type, parse_criteria(query))
    except FhirError:
        return None


def _content(event: Event) -> str | None:
    """The body the event is about: its version's, or for a delete the last version with content."""
    with connection.cursor() as cursor:
        if event.action == "delete":
            cursor.execute(_LAST_CONTENT_SQL, [event.resource_pk, event.version])
        else:
            cursor.execute(_VERSION_SQL, [event.resource_pk, event.version])
        row = cursor.fetchone()
    return row[0] if row and row[0] else None
