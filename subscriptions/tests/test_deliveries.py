"""Claims and leases (subscriptions/deliveries.py): a worker whose lease ran out while it was sending
keeps its attempt in the history but no longer decides the delivery's state."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client, override_settings
from django.utils import timezone

from subscriptions import deliveries, matching
from subscriptions.channels import Outcome
from subscriptions.models import Delivery

from .test_rest_hook import hook, observation, post, subscription, token, world  # noqa: F401


@pytest.fixture
def owed(world, hook):  # noqa: F811
    client, admin = Client(), token("Admin")
    assert post(client, admin, "Subscription", subscription(hook.url)).status_code == 201
    assert post(client, admin, "Observation", observation("p1")).status_code == 201
    (pk,) = matching.dispatch()
    return pk


def _taken_over(pk: int) -> tuple[Delivery, Delivery]:
    """Claimed by a first worker whose lease then runs out, and claimed again by a second."""
    first = deliveries.claim(pk)
    assert deliveries.claim(pk) is None  # held
    Delivery.objects.filter(pk=pk).update(next_attempt=timezone.now() - timedelta(seconds=1))
    second = deliveries.claim(pk)
    assert first is not None and second is not None
    return first, second


def test_a_late_failure_does_not_undo_the_delivery_that_took_over(owed):
    first, second = _taken_over(owed)
    assert deliveries.record(second, Outcome(True, status_code=200)) is None
    with override_settings(FHIR_SUBSCRIPTION_RETRIES=0):
        assert deliveries.record(first, Outcome(False, error="timed out")) is None
    delivery = Delivery.objects.get(pk=owed)
    assert delivery.state == Delivery.DELIVERED and delivery.attempts == 1
    assert first.state == Delivery.SENDING  # the late worker sees it did not decide (no error status)
    assert delivery.attempt_set.count() == 2


def test_the_worker_that_took_over_decides_after_a_late_success(owed):
    first, second = _taken_over(owed)
    assert deliveries.record(first, Outcome(True, status_code=200)) is None
    assert Delivery.objects.get(pk=owed).state == Delivery.SENDING
    wait = deliveries.record(second, Outcome(False, error="HTTP 503"))
    assert wait is not None  # a retry, under the same key: at least once
    assert Delivery.objects.get(pk=owed).state == Delivery.PENDING


def test_the_holder_moves_the_delivery_on(owed):
    delivery = deliveries.claim(owed)
    assert deliveries.record(delivery, Outcome(False, error="HTTP 500")) is not None
    assert delivery.state == Delivery.PENDING and delivery.attempts == 1
    stored = Delivery.objects.get(pk=owed)
    assert stored.state == Delivery.PENDING and stored.next_attempt > timezone.now()
