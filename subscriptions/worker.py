"""The worker's steps, and the embedded worker that runs them inside the server process.

This is an adapter over the door, like a REST view: it matches outbox events (matching.py), and for
each delivery rebuilds the subscriber (subscriber.py), asks the door for the notification
(`interactions.notify.notify`, audited), sends it (channels/), and records the attempt
(deliveries.py). Status changes of a Subscription resource (error after the last retry, active
again after a retry) are system updates through the door as well, so they are versioned, audited
and notified like any change.

Who runs the steps (settings.FHIR_WORKER):
- `celery`: Celery tasks (tasks.py), woken after each commit, with a beat sweep every few seconds;
- `embedded`: one background thread per server process, woken after each commit, with its own
  small pool so that a slow receiver holds one thread and not the others; it also runs the periodic
  sweep. Nothing runs inside a request: the write answers before any delivery starts;
- `manual`: nothing runs by itself (tests call `drain()`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from authz.context import AccessContext, Origin
from interactions import notify, read, write
from resources import fhirjson
from resources.outcomes import FhirError

from . import channels, deliveries, matching, outbox, subscriber
from .models import Delivery, SubscriptionState

log = logging.getLogger(__name__)


def base_url() -> str:
    return settings.FHIR_BASE_URL.rstrip("/") or "http://127.0.0.1:8000/fhir"


def deliver(pk: int) -> float | None:
    """One attempt of one delivery, if it is due and free; the seconds until its retry, if any."""
    delivery = deliveries.claim(pk)
    if delivery is None:
        return None
    state = delivery.subscription
    if state.status != SubscriptionState.ACTIVE or deliveries_ended(state):
        deliveries.withhold(delivery, f"the subscription is {state.status}")
        return None
    origin = Origin(
        transport="worker",
        method="NOTIFY",
        path=f"Subscription/{state.fhir_id}",
        query=f"delivery={delivery.pk}",
    )
    ctx = subscriber.context(state, request_id=f"notify-{delivery.key}-{delivery.attempts}", origin=origin)
    if ctx is None:
        deliveries.withhold(
            delivery, "the subscriber can no longer be a caller (credential or identity gone)"
        )
        return None
    try:
        shown = notify.notify(
            ctx, resource_type=delivery.resource_type, fhir_id=delivery.fhir_id, delivery=delivery
        )
    except FhirError:
        deliveries.withhold(delivery, "the subscriber may not see this event")
        return None
    with_body = state.payload and delivery.action != "delete"
    notification = channels.Notification(
        subscription_id=state.fhir_id,
        channel_type=state.channel_type,
        endpoint=state.endpoint,
        payload=state.payload,
        headers=tuple(state.headers),
        action=delivery.action,
        resource_type=delivery.resource_type,
        fhir_id=delivery.fhir_id,
        version=delivery.version,
        number=deliveries.number(delivery),
        key=delivery.key,
        base_url=base_url(),
        body=shown.body if with_body else None,
        timestamp=shown.last_updated.isoformat() if shown.last_updated else "",
    )
    try:
        outcome = channels.send(notification, settings.FHIR_SUBSCRIPTION_TIMEOUT)
    except Exception as exc:  # a channel bug must not lose the delivery: it is retried like a failure
        log.exception("Channel %s failed on delivery %s", state.channel_type, pk)
        outcome = channels.Outcome(False, error=f"internal error: {type(exc).__name__}")
    wait = deliveries.record(delivery, outcome)
    # As this attempt left it: a worker that lost its claim meanwhile leaves the status to the other.
    if delivery.state == Delivery.DEAD:
        text = deliveries.error_text(delivery)
        deliveries.mark_error(state, text)
        set_status(state.fhir_id, "error", text)
    return wait


def deliveries_ended(state: SubscriptionState) -> bool:
    return state.end is not None and state.end <= timezone.now()


def set_status(fhir_id: str, status: str, error: str = "") -> None:
    """The Subscription resource's status, changed by the platform (a new version, through the door)."""
    ctx = AccessContext.system(f"subscription {status}")
    try:
        current = read.read(ctx, resource_type="Subscription", fhir_id=fhir_id)
        body = fhirjson.loads(current.body)
        body["status"] = status
        if error:
            body["error"] = error
        else:
            body.pop("error", None)
        write.update(ctx, resource_type="Subscription", fhir_id=fhir_id, body=body)
    except FhirError:
        log.warning("Could not set Subscription/%s to %s", fhir_id, status, exc_info=True)


def retry_dead(pks: list[int] | None = None, *, subscription: str | None = None) -> int:
    """Dead letters back in the queue; their subscriptions active again (resource included)."""
    states = set(
        Delivery.objects.filter(
            state=Delivery.DEAD, **({"subscription__fhir_id": subscription} if subscription else {})
        )
        .filter(**({"pk__in": pks} if pks is not None else {}))
        .values_list("subscription__fhir_id", "subscription__status")
    )
    count = deliveries.retry(pks, subscription=subscription)
    for fhir_id, status in states:
        if status == SubscriptionState.ERROR:
            set_status(fhir_id, "active")
    outbox.wake()
    return count


def sweep(*, late: float = 0.0) -> list[int]:
    """The periodic step: stop ended subscriptions, match what is pending, return what is due
    (for at least `late` seconds)."""
    for fhir_id in deliveries.expire():
        set_status(fhir_id, "off")
    return dispatch_all(late=late)


def dispatch_all(*, late: float = 0.0) -> list[int]:
    """What a wake-up does: match every pending event, return the deliveries that are due."""
    while matching.dispatch():
        pass
    return deliveries.due(late=late)


def drain(rounds: int = 20) -> None:
    """Run everything that is due now, in this thread, until nothing is (tests, one-off commands)."""
    for _ in range(rounds):
        due = sweep()
        if not due:
            return
        for pk in due:
            deliver(pk)


# --- periodic jobs --------------------------------------------------------------------------------

_jobs: list[tuple[str, float, Callable[[], object]]] = []


def periodic(name: str, every: float, job: Callable[[], object]) -> None:
    """Run `job()` every `every` seconds in the embedded worker (0: every round, i.e. after each
    wake-up). Under Celery the same jobs are beat entries (settings CELERY_BEAT_SCHEDULE)."""
    if all(existing != name for existing, _, _ in _jobs):
        _jobs.append((name, every, job))


# --- the embedded worker -------------------------------------------------------------------------


class EmbeddedWorker:
    """A daemon thread that runs the worker's steps for this process, and a small pool for deliveries."""

    def __init__(self) -> None:
        self._wake = threading.Event()
        self._pool = ThreadPoolExecutor(settings.FHIR_SUBSCRIPTION_THREADS, thread_name_prefix="delivery")
        self._running: set[int] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="subscription-worker", daemon=True)
        self._last_purge = 0.0
        self._last_run: dict[str, float] = {}

    def start(self) -> None:
        outbox.on_wake(self._wake.set)
        self._thread.start()

    def _loop(self) -> None:
        last_sweep = float("-inf")
        while True:
            self._wake.wait(settings.FHIR_WORKER_SWEEP_SECONDS)
            self._wake.clear()
            full = time.monotonic() - last_sweep >= settings.FHIR_WORKER_SWEEP_SECONDS
            try:
                self._round(full)
            except Exception:
                log.exception("Subscription worker round failed; trying again at the next sweep")
            finally:
                close_old_connections()
            if full:
                last_sweep = time.monotonic()
            # Commits that arrive meanwhile are matched together in the next round: under a stream of
            # writes the worker runs a few rounds a second, not one per commit beside the requests.
            time.sleep(settings.FHIR_WORKER_MIN_INTERVAL)

    def _round(self, full: bool) -> None:
        """A wake-up matches and delivers; a full round (every sweep interval) also expires ended
        subscriptions, purges, and runs the periodic jobs."""
        if not full:
            self._submit(dispatch_all())
            self._jobs(every_round_only=True)
            return
        if time.monotonic() - self._last_purge > 3600:
            deliveries.purge()
            self._last_purge = time.monotonic()
        self._submit(sweep())
        # After the deliveries are on their way: a long job (a materialisation) holds up no notification.
        self._jobs()

    def _submit(self, due: list[int]) -> None:
        for pk in due:
            with self._lock:
                if pk in self._running:
                    continue
                self._running.add(pk)
            self._pool.submit(self._deliver, pk)

    def _jobs(self, every_round_only: bool = False) -> None:
        for name, every, job in list(_jobs):
            if every_round_only and every:
                continue
            if time.monotonic() - self._last_run.get(name, float("-inf")) >= every:
                self._last_run[name] = time.monotonic()
                try:
                    job()
                except Exception:
                    log.exception("Periodic job %s failed; it runs again at its next turn", name)
                finally:
                    close_old_connections()

    def _deliver(self, pk: int) -> None:
        try:
            wait = deliver(pk)
            if wait is not None:
                threading.Timer(wait, self._wake.set).start()
        except Exception:
            log.exception("Delivery %s failed; it is retried after its lease", pk)
        finally:
            close_old_connections()
            with self._lock:
                self._running.discard(pk)


_embedded: EmbeddedWorker | None = None
_start_lock = threading.Lock()


def start_embedded() -> None:
    """Start this process's embedded worker (once), when the deployment runs one."""
    global _embedded
    if settings.FHIR_WORKER != "embedded":
        return
    with _start_lock:
        if _embedded is None:
            _embedded = EmbeddedWorker()
            _embedded.start()
