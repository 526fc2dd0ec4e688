"""Celery tasks: thin wrappers over the worker's steps (worker.py), for FHIR_WORKER=celery.

- `subscriptions.dispatch`: match pending outbox events; queue one `deliver` per new delivery.
  Sent after every commit that wrote events.
- `subscriptions.deliver(pk)`: one attempt; a retry is queued with its back-off as countdown.
- `subscriptions.sweep`: run by beat every few seconds (settings CELERY_BEAT_SCHEDULE): what a lost
  wake-up, a dead worker or an expired lease left behind is found and queued again.

Tasks are acknowledged late and given back when their worker dies (settings), and every step is
idempotent: a delivery is claimed before it is attempted, and carries the same key on every attempt.
"""

from __future__ import annotations

import threading
import time

from celery import shared_task
from django.db import close_old_connections

from . import deliveries, matching, worker


@shared_task(name="subscriptions.dispatch", ignore_result=True)
def dispatch() -> None:
    while True:
        created = matching.dispatch()
        if not created:
            return
        for pk in created:
            deliver.delay(pk)


@shared_task(name="subscriptions.deliver", ignore_result=True)
def deliver(pk: int) -> None:
    try:
        wait = worker.deliver(pk)
    finally:
        close_old_connections()
    if wait is not None:
        deliver.apply_async((pk,), countdown=wait)


# A delivery due for less than this has its task queued already (dispatch or a retry's countdown):
# the sweep queues only what was lost, not a second task for everything due.
_LOST_AFTER = 15.0


@shared_task(name="subscriptions.sweep", ignore_result=True)
def sweep() -> None:
    for pk in worker.sweep(late=_LOST_AFTER):
        deliver.delay(pk)
    deliveries.purge()


# A commit's wake-up queues a dispatch a moment later, and the commits of that moment share it: a
# dispatch matches every pending event, so one per process per moment is enough (one per commit
# cost the web processes a broker message each, and the worker a task each).
_GATHER = 0.05
_queued_until = 0.0
_queued_lock = threading.Lock()


def wake() -> None:
    global _queued_until
    now = time.monotonic()
    with _queued_lock:
        if now < _queued_until:
            return  # a dispatch queued by this process runs after this commit, and will see it
        _queued_until = now + _GATHER
    # No retries while a write's request waits: if the broker is away, the sweep finds the events.
    dispatch.apply_async(countdown=_GATHER, retry=False)
