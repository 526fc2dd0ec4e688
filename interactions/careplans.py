"""CarePlan scheduling through the door: `POST CarePlan/[id]/$materialize`, and the scheduler's runs
(a changed plan planned again, the rolling horizon moved, windows opened and closed).

Every run is one interaction with the operation `materialize`: one audit row listing the Tasks it
wrote, in one transaction with them. The Tasks are written by the platform (system scope); a
scheduled run's context is the scheduler's, on behalf of the plan's author, and `$materialize` is the
caller's (who needs `materialize` on CarePlan and must be able to read the plan) while the Tasks it
creates are written by the scheduler; its answer shows them as the caller's reads would (property
filters applied, unreadable ones left out). Tasks trigger subscriptions like any write.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from audit.services import note_results
from authz import rules
from authz.context import SYSTEM, AccessContext, Origin
from careplans import materialize as planner
from careplans.models import Schedule
from resources import fhirjson, selectors

from .door import interaction
from .shaping import as_read


def scheduler(*, on_behalf_of: str = "", path: str = "") -> AccessContext:
    """The scheduler as a caller: the platform, named as such in the audit log."""
    return AccessContext(
        role=SYSTEM,
        request_id=f"system:careplan-scheduler:{uuid.uuid4().hex[:12]}",
        method="system",
        credential="careplan scheduler",
        on_behalf_of=on_behalf_of,
        origin=Origin(transport="worker", method="MATERIALIZE", path=path),
    )


def _noted(ctx: AccessContext, run: planner.Run) -> planner.Run:
    note_results(ctx, [*run.created, *run.changed])
    return run


@interaction("materialize", writes=True)
def plan(ctx: AccessContext, *, resource_type: str, fhir_id: str, careplan_pk: int) -> planner.Run:
    """A changed CarePlan planned again."""
    run = planner.Run()
    planner.plan(ctx, careplan_pk, now=timezone.now(), run=run)
    return _noted(ctx, run)


@interaction("materialize", writes=True)
def extend(ctx: AccessContext, *, schedule_pks: list[int]) -> planner.Run:
    """The rolling horizon of unchanged plans moved to now + horizon."""
    run = planner.Run()
    planner.extend(ctx, list(Schedule.objects.filter(pk__in=schedule_pks)), now=timezone.now(), run=run)
    return _noted(ctx, run)


@interaction("materialize", writes=True)
def advance(ctx: AccessContext) -> planner.Run:
    """Tasks whose window opened become ready; those whose window closed, overdue."""
    run = planner.Run()
    planner.advance(ctx, now=timezone.now(), run=run)
    return _noted(ctx, run)


@interaction("materialize", writes=True)
def materialize(
    ctx: AccessContext,
    *,
    resource_type: str,
    fhir_id: str,
    start: datetime | None = None,
    end: datetime | None = None,
    dry_run: bool = False,
) -> planner.Run:
    """`$materialize` on one CarePlan: its Tasks in [start, end) (default now to now + horizon),
    created, or with `dry_run` only previewed."""
    rules.authorize(ctx, "materialize", "CarePlan")
    stored = selectors.resource_read(ctx, resource_type="CarePlan", fhir_id=fhir_id)
    now = timezone.now()
    start = start or now
    end = end or now + planner.horizon()
    author = ((fhirjson.loads(stored.body).get("author") or {}).get("reference")) or ""
    writer = scheduler(on_behalf_of=author, path=f"CarePlan/{fhir_id}/$materialize")
    run = planner.Run()
    if dry_run:
        # The Tasks are written in a savepoint, read back as the caller's reads would show them
        # (property filters, or not at all), and rolled back: a preview shows no more than the
        # real run's answer would.
        with transaction.atomic():
            planner.window(writer, stored.pk, start=start, end=end, now=now, run=run)
            run.shown = _as_read(ctx, run.created)
            transaction.set_rollback(True)
        run.created = []
        return run
    planner.window(writer, stored.pk, start=start, end=end, now=now, run=run)
    run.shown = _as_read(ctx, run.created)
    return _noted(ctx, run)


def _as_read(ctx: AccessContext, written: list) -> list:
    return [shown for shown in (as_read(ctx, one) for one in written) if shown is not None]
