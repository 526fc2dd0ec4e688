"""The scheduler's recurring work, as steps any worker runs (an adapter over the door, like the
subscription worker): plans that changed, the rolling horizon, and windows that open and close.

- `plan_changed()`: every CarePlan marked dirty from the outbox, planned again, one interaction per
  plan (on behalf of its author). Runs after each wake-up of the embedded worker and every 30 s
  under Celery beat.
- `extend_horizon()`: hourly, the plans whose Tasks end before now + horizon, in batches of
  FHIR_CAREPLAN_BATCH_PLANS plans, one interaction (and one write batch) per batch.
- `advance()`: every minute, Tasks whose window opened or closed.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from interactions import careplans as door
from resources import fhirjson
from resources.models import Resource

from . import materialize as planner
from .models import Schedule

log = logging.getLogger(__name__)


def plan_changed(limit: int = 500) -> int:
    """Plan the dirty plans (oldest change first); returns how many were planned."""
    done = 0
    for schedule in Schedule.objects.filter(dirty=True).order_by("updated")[:limit]:
        author = _author(schedule.careplan_pk)
        ctx = door.scheduler(on_behalf_of=author, path=f"CarePlan/{schedule.fhir_id}")
        try:
            door.plan(
                ctx, resource_type="CarePlan", fhir_id=schedule.fhir_id, careplan_pk=schedule.careplan_pk
            )
        except Exception as exc:
            # Left dirty, behind the others: a plan that cannot be planned holds up no other.
            log.exception("Could not plan CarePlan/%s", schedule.fhir_id)
            Schedule.objects.filter(pk=schedule.pk).update(
                warnings=f"planning failed: {exc}"[:2000], updated=timezone.now()
            )
            continue
        done += 1
    return done


def extend_horizon(*, progress=None) -> int:
    """Returns how many Tasks were created."""
    end = timezone.now() + timedelta(days=settings.FHIR_CAREPLAN_HORIZON_DAYS)
    pending = list(
        Schedule.objects.filter(active=True, dirty=False)
        .filter(Q(until__isnull=True) | Q(until__lt=end - timedelta(minutes=1)))
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    created = 0
    size = settings.FHIR_CAREPLAN_BATCH_PLANS
    for first in range(0, len(pending), size):
        batch = pending[first : first + size]
        run = door.extend(door.scheduler(path="CarePlan/$materialize (horizon)"), schedule_pks=batch)
        created += len(run.created)
        if progress:
            progress(first + len(batch), len(pending))
    return created


def advance() -> int:
    ctx = door.scheduler(path="Task (windows)")
    if not planner.advance_due(ctx, now=timezone.now()):
        return 0  # nothing opened or closed: no run, no audit row
    return len(door.advance(ctx).changed)


def _author(careplan_pk: int) -> str:
    row = (
        Resource.objects.system("careplan scheduling").filter(pk=careplan_pk).only("body", "deleted").first()
    )
    if row is None or row.deleted or not row.body:
        return ""
    return ((fhirjson.loads(row.body).get("author") or {}).get("reference")) or ""


def register_embedded() -> None:
    from subscriptions import worker

    worker.periodic("careplans-plan", 0, plan_changed)
    worker.periodic("careplans-extend", 3600, extend_horizon)
    worker.periodic("careplans-advance", 60, advance)
