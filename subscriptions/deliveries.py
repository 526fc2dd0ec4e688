"""The life of a delivery: claimed by one worker at a time, attempted, retried with back-off, then
delivered, withheld or dead.

At least once: a delivery is claimed by moving `next_attempt` a lease ahead (`state = sending`); a
worker that dies holding it leaves the lease to expire, and the next sweep claims it again. The
idempotency key never changes, so a receiver that got the first attempt recognises the second.
After FHIR_SUBSCRIPTION_RETRIES failed retries the delivery is dead (a dead letter, retried from the
console or `manage.py subscription_retry`) and the subscription goes to `error`.
"""

from __future__ import annotations

import random
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from .channels import Outcome
from .models import Attempt, Delivery, SubscriptionState


def lease() -> timedelta:
    # Longer than any one attempt can take (connection and read timeouts), so a live attempt is
    # never claimed twice; a shorter one (FHIR_SUBSCRIPTION_LEASE) hands a dead worker's deliveries
    # on sooner, at the price of a second send, under the same key, of an attempt that was only slow.
    seconds = settings.FHIR_SUBSCRIPTION_LEASE or settings.FHIR_SUBSCRIPTION_TIMEOUT * 3 + 30
    return timedelta(seconds=seconds)


def due(limit: int = 200, *, late: float = 0.0) -> list[int]:
    """Deliveries whose time has come: pending ones, and claimed ones whose worker went quiet.
    `late`: only those due for at least that many seconds (a queue that already holds their task has
    had that long to run it)."""
    now = timezone.now() - timedelta(seconds=late)
    return list(
        Delivery.objects.filter(Q(state=Delivery.PENDING) | Q(state=Delivery.SENDING), next_attempt__lte=now)
        .order_by("next_attempt")
        .values_list("pk", flat=True)[:limit]
    )


def claim(pk: int) -> Delivery | None:
    """Take the delivery for one attempt, or None when it is not due or another worker has it."""
    now = timezone.now()
    taken = Delivery.objects.filter(
        Q(state=Delivery.PENDING) | Q(state=Delivery.SENDING), pk=pk, next_attempt__lte=now
    ).update(state=Delivery.SENDING, next_attempt=now + lease())
    if not taken:
        return None
    return Delivery.objects.select_related("subscription").get(pk=pk)


def number(delivery: Delivery) -> int:
    """The delivery's event number, given once, when its notification is first allowed to leave."""
    if delivery.number is None:
        with transaction.atomic():
            SubscriptionState.objects.filter(pk=delivery.subscription_id).update(
                events_since_start=F("events_since_start") + 1
            )
            given = SubscriptionState.objects.values_list("events_since_start", flat=True).get(
                pk=delivery.subscription_id
            )
            Delivery.objects.filter(pk=delivery.pk).update(number=given)
        delivery.number = given
    return delivery.number


def backoff(retry: int) -> float:
    """Seconds before the `retry`-th retry (1-based): exponential, capped, with jitter."""
    base = settings.FHIR_SUBSCRIPTION_BACKOFF * (2 ** (retry - 1))
    return min(base, settings.FHIR_SUBSCRIPTION_BACKOFF_MAX) * random.uniform(0.5, 1.5)


@transaction.atomic
def record(delivery: Delivery, outcome: Outcome) -> float | None:
    """Keep the attempt and move the delivery on; returns the seconds until the next attempt when
    one is scheduled. A delivery that ran out of retries is dead and its subscription in error.

    Only the worker still holding the claim moves the delivery: one whose lease ran out while it
    was sending (a paused process, a receiver slower than the lease) keeps its attempt in the
    history but leaves the state to the worker that took the delivery over, so that a late failure
    cannot undo a delivery or kill it."""
    Attempt.objects.create(
        delivery=delivery,
        ok=outcome.ok,
        status_code=outcome.status_code,
        latency_ms=outcome.latency_ms,
        error=outcome.error[:2000],
    )
    now = timezone.now()
    attempts, wait = delivery.attempts + 1, None
    if outcome.ok:
        changes = {"state": Delivery.DELIVERED, "finished": now, "last_error": ""}
    elif attempts > settings.FHIR_SUBSCRIPTION_RETRIES:
        changes = {"state": Delivery.DEAD, "finished": now, "last_error": outcome.error[:2000]}
    else:
        wait = backoff(attempts)
        changes = {
            "state": Delivery.PENDING,
            "next_attempt": now + timedelta(seconds=wait),
            "last_error": outcome.error[:2000],
        }
    held = Delivery.objects.filter(pk=delivery.pk, state=Delivery.SENDING, next_attempt=delivery.next_attempt)
    if not held.update(attempts=attempts, **changes):
        return None
    delivery.attempts = attempts
    for name, value in changes.items():
        setattr(delivery, name, value)
    return wait


def withhold(delivery: Delivery, why: str) -> None:
    """Nothing is sent: the subscription ended, or its subscriber may no longer see this."""
    Delivery.objects.filter(pk=delivery.pk).update(
        state=Delivery.WITHHELD, finished=timezone.now(), last_error=why[:2000]
    )


def error_text(delivery: Delivery) -> str:
    return (
        f"Delivery of event {delivery.number} failed {delivery.attempts} times; last error: "
        f"{delivery.last_error}"
    )[:1000]


def mark_error(state: SubscriptionState, text: str) -> None:
    SubscriptionState.objects.filter(pk=state.pk).update(
        status=SubscriptionState.ERROR, error=text, updated=timezone.now()
    )


def retry(pks: list[int] | None = None, *, subscription: str | None = None) -> int:
    """Dead letters back to pending, now (all of them, or those given, or one subscription's); their
    subscriptions return to active. Returns how many."""
    dead = Delivery.objects.filter(state=Delivery.DEAD)
    if pks is not None:
        dead = dead.filter(pk__in=pks)
    if subscription is not None:
        dead = dead.filter(subscription__fhir_id=subscription)
    with transaction.atomic():
        states = set(dead.values_list("subscription_id", flat=True))
        count = dead.update(state=Delivery.PENDING, next_attempt=timezone.now(), attempts=0, finished=None)
        SubscriptionState.objects.filter(pk__in=states, status=SubscriptionState.ERROR).update(
            status=SubscriptionState.ACTIVE, error=""
        )
    return count


def expire(now=None) -> int:
    """Subscriptions past their `end` stop (R4: the server turns them off)."""
    now = now or timezone.now()
    return SubscriptionState.objects.filter(status=SubscriptionState.ACTIVE, end__lte=now).update(
        status=SubscriptionState.OFF, updated=now
    )


def purge(now=None) -> int:
    """Forget dispatched events and finished deliveries older than the retention."""
    from .models import Event

    cutoff = (now or timezone.now()) - timedelta(days=settings.FHIR_SUBSCRIPTION_RETENTION_DAYS)
    events, _ = Event.objects.filter(dispatched=True, created__lt=cutoff).delete()
    done, _ = Delivery.objects.filter(
        state__in=[Delivery.DELIVERED, Delivery.WITHHELD], finished__lt=cutoff
    ).delete()
    return events + done
