"""The transactional outbox: one `Event` row per committed change, written in the change's transaction.

Registered as a change hook of the store (resources/hooks.py), so every write path leaves its events
with its data, in one statement per write. When the transaction commits, whatever delivers in this
deployment is woken (`on_wake`): the in-process worker of the embedded mode, or a Celery task; if
the wake-up is lost (a crash between commit and send), the periodic sweep finds the events anyway.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from resources import bulk, hooks

from .models import Event

log = logging.getLogger(__name__)
_wakers: list[Callable[[], None]] = []
_consumers: list[Callable[[list[Event]], None]] = []


def on_wake(waker: Callable[[], None]) -> None:
    """`waker()` is called after each commit that wrote events (the worker registers itself)."""
    if waker not in _wakers:
        _wakers.append(waker)


def _record(changes: list[hooks.Change]) -> None:
    if not settings.FHIR_SUBSCRIPTION_OUTBOX:
        return
    if bulk.wanted(len(changes)):
        now = timezone.now()
        bulk.copy(
            Event,
            ("action", "resource_type", "fhir_id", "version", "resource_pk", "created", "dispatched"),
            ((c.action, c.resource_type, c.fhir_id, c.version, c.pk, now, False) for c in changes),
        )
    else:
        Event.objects.bulk_create(
            Event(
                action=change.action,
                resource_type=change.resource_type,
                fhir_id=change.fhir_id,
                version=change.version,
                resource_pk=change.pk,
            )
            for change in changes
        )
    if _wakers:
        transaction.on_commit(wake)


def on_events(consumer: Callable[[list[Event]], None]) -> None:
    """`consumer(events)` sees every batch of events as it is matched, in the transaction that marks
    them dispatched (so what it records is kept exactly when the events are consumed)."""
    if consumer not in _consumers:
        _consumers.append(consumer)


def consume(events: list[Event]) -> None:
    for consumer in _consumers:
        consumer(events)


def wake() -> None:
    for waker in _wakers:
        try:
            waker()
        except Exception:
            # The events are committed; the sweep delivers them if this wake-up cannot.
            log.exception("Could not wake the subscription worker")


def register() -> None:
    hooks.register_changes(_record)
