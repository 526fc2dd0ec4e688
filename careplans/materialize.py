"""CarePlan activities to Task resources (issue 12's contract; https://hl7.org/fhir/R4/task.html).

Each occurrence of a schedulable activity (activities.py, timing.py) inside the window becomes one
Task: `requested`, `order`, based on the plan, for its subject, focused on the activity's request or
product, its window as `restriction.period` and `executionPeriod`, and the identifier
`http://fhirplatform.org/CodeSystem/careplan-occurrence|{plan id}/{activity key}/{start UTC}`.
The Task's id is derived from that identifier (a UUID v5), so the database's unique (type, id)
constraint makes a second materialisation of the same occurrence impossible, by two workers at
once as much as by two runs; an id that exists (in any state, deleted included) is never written
again.

`plan(...)` plans one CarePlan again after it changed: the Tasks of its future occurrences that no
longer fit (the timing changed, the plan stopped) are cancelled, put on hold with the plan and
resumed with it, and the missing ones created. `extend(...)` moves the rolling horizon of plans that
did not change: it only adds the occurrences of the new end of the window. Tasks whose window has
begun, and Tasks a client has moved on (in progress, completed...), are never touched.

These functions write as the platform (system scope); the door (interactions/careplans.py) owns the
transaction, the audit row naming the scheduler and the run's Tasks.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction

from authz.context import AccessContext
from resources import fhirdates, fhirjson
from resources.models import Resource, ResourceVersion
from resources.search.conditional import criteria_filter
from resources.services import Stored, checked_body, insert_many, resource_update

from . import activities, timing
from .models import Schedule

OCCURRENCE_SYSTEM = "http://fhirplatform.org/CodeSystem/careplan-occurrence"
_IDS = uuid.UUID("0b7d4f5e-6c1a-4f0e-93a8-1d2c5b7e9f31")
_OPEN = ("requested", "ready", "on-hold")
_STOPPED_PLAN = "The CarePlan is no longer active"
_CHANGED_PLAN = "The CarePlan's schedule changed"
_HELD_PLAN = "The CarePlan is on hold"
# The types a CarePlan's author can be that Task.requester also allows.
_REQUESTERS = frozenset(
    {"Patient", "Practitioner", "PractitionerRole", "RelatedPerson", "Organization", "Device"}
)


@dataclass
class Run:
    """What one run did (or, dry, would do)."""

    created: list[Stored] = field(default_factory=list)
    previewed: list[dict] = field(default_factory=list)
    shown: list[Stored] = field(default_factory=list)  # the answer to the caller: its reads of them
    changed: list[Stored] = field(default_factory=list)  # cancelled, held or resumed
    warnings: list[str] = field(default_factory=list)


def task_id(identifier: str) -> str:
    return str(uuid.uuid5(_IDS, identifier))


def horizon() -> timedelta:
    return timedelta(days=settings.FHIR_CAREPLAN_HORIZON_DAYS)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _instant(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- what a plan asks for --------------------------------------------------------------------------


def desired(
    ctx: AccessContext, row: Resource, *, start: datetime, end: datetime, now: datetime, run: Run
) -> dict[str, dict]:
    """The Task bodies (by id) of the plan's occurrences starting in [start, end)."""
    plan = fhirjson.loads(row.body)
    found = _activities(plan)
    run.warnings.extend(f"CarePlan/{row.fhir_id}: {w}" for w in found.warnings)
    anchor = _anchor(plan, row)
    tasks: dict[str, dict] = {}
    budget = settings.FHIR_CAREPLAN_MAX_TASKS_PER_PLAN
    for activity in found.activities:
        spans: list[tuple[datetime, datetime | None]] = []
        if activity.period is not None:
            spans.extend(_period_span(activity.period, start, end, row.fhir_id, activity.key, run))
        for one in activity.timings:
            schedule, notes = _schedule(plan, one, start=start, end=end, anchor=anchor, limit=budget + 1)
            for note in notes:
                run.warnings.append(f"CarePlan/{row.fhir_id} activity {activity.key}: {note}")
            spans.extend((o.start, o.end) for o in schedule.occurrences)
        for begins, ends in spans:
            if len(tasks) >= budget:
                run.warnings.append(
                    f"CarePlan/{row.fhir_id}: more than {budget} occurrences in the window "
                    "(FHIR_CAREPLAN_MAX_TASKS_PER_PLAN): the rest are not made"
                )
                return tasks
            body = _task(plan, row.fhir_id, activity, begins, ends, now)
            tasks[body["id"]] = body
    return tasks


def _activities(plan: dict) -> activities.Plan:
    requests = _medication_requests(
        activities.medication_requests(plan)[: settings.FHIR_CAREPLAN_MAX_ACTIVITIES]
    )
    return activities.activities(plan, requests, most=settings.FHIR_CAREPLAN_MAX_ACTIVITIES)


def _schedule(plan: dict, one: dict, *, start: datetime, end: datetime, anchor: datetime, limit: int = 5000):
    """One timing's occurrences in [start, end), in the plan's zone, with every warning about it."""
    zone, notes = timing.zone_of(plan, one, settings.FHIR_DEFAULT_TIMEZONE)
    try:
        schedule = timing.occurrences(
            one,
            window_start=start,
            window_end=end,
            anchor=anchor,
            zone=zone,
            code_times={**timing.DEFAULT_CODE_TIMES, **settings.FHIR_CAREPLAN_CODE_TIMES},
            when_times={**timing.DEFAULT_WHEN_TIMES, **settings.FHIR_CAREPLAN_WHEN_TIMES},
            limit=max(limit, 1),
        )
    except (OverflowError, ValueError) as exc:  # dates at the calendar's edges
        return timing.Schedule([], [f"the schedule cannot be computed ({exc})"]), notes
    return schedule, [*notes, *schedule.warnings]


def warnings_of(plan: dict, plan_id: str, *, now: datetime) -> list[str]:
    """What the scheduler would warn about for this plan (parts it cannot compute), for its writer."""
    if not activities.eligible(plan, all_active=settings.FHIR_CAREPLAN_ALL_ACTIVE):
        return []
    found = _activities(plan)
    warnings = list(found.warnings)
    anchor = fhirdates.start_of((plan.get("period") or {}).get("start")) or now
    for activity in found.activities:
        for one in activity.timings:
            _, notes = _schedule(plan, one, start=now, end=now + horizon(), anchor=anchor)
            warnings.extend(f"activity {activity.key}: {note}" for note in notes)
    return warnings


def _task(
    plan: dict,
    plan_id: str,
    activity: activities.Activity,
    start: datetime,
    end: datetime | None,
    now: datetime,
) -> dict:
    identifier = f"{plan_id}/{activity.key}/{_stamp(start)}"
    window = {"start": _instant(start)}
    if end is not None:
        window["end"] = _instant(end)
    body = {
        "resourceType": "Task",
        "id": task_id(identifier),
        "identifier": [{"system": OCCURRENCE_SYSTEM, "value": identifier}],
        "basedOn": [{"reference": f"CarePlan/{plan_id}"}],
        "status": "requested",
        "intent": "order",
        "authoredOn": _instant(now),
        "executionPeriod": window,
        "restriction": {"period": dict(window)},
    }
    if activity.description:
        body["description"] = activity.description
    if plan.get("subject"):
        body["for"] = plan["subject"]
    if activity.focus:
        body["focus"] = activity.focus
    author = (plan.get("author") or {}).get("reference") or ""
    if author.split("/", 1)[0] in _REQUESTERS:
        body["requester"] = plan["author"]
    return body


def _period_span(period: dict, start: datetime, end: datetime, plan_id: str, key: str, run: Run):
    begins = fhirdates.start_of(period.get("start"))
    if begins is None:
        run.warnings.append(f"CarePlan/{plan_id} activity {key}: scheduledPeriod without a start: no Task")
        return []
    if not start <= begins < end:
        return []
    return [(begins, fhirdates.start_of(period.get("end")))]


def _anchor(plan: dict, row: Resource) -> datetime:
    started = fhirdates.start_of((plan.get("period") or {}).get("start"))
    if started is not None:
        return started
    first = (
        ResourceVersion.objects.system("careplan scheduling")
        .filter(resource_id=row.pk, version=1)
        .values_list("last_updated", flat=True)
        .first()
    )
    return first or row.last_updated


def _medication_requests(refs: list[str]) -> dict[str, dict]:
    if not refs:
        return {}
    ids = [ref.split("/", 1)[1] for ref in refs]
    rows = Resource.objects.system("careplan scheduling").filter(
        resource_type="MedicationRequest", fhir_id__in=ids, deleted=False
    )
    return {f"MedicationRequest/{r.fhir_id}": fhirjson.loads(r.body) for r in rows}


# --- writing --------------------------------------------------------------------------------------


def _existing(tasks: dict[str, dict]) -> set[str]:
    ids, found = list(tasks), set()
    for first in range(0, len(ids), 500):  # SQLite bounds the parameters of one statement
        found.update(
            Resource.objects.system("careplan scheduling: which occurrences exist")
            .filter(resource_type="Task", fhir_id__in=ids[first : first + 500])
            .values_list("fhir_id", flat=True)
        )
    return found


def create_missing(ctx: AccessContext, tasks: dict[str, dict], run: Run, *, again: bool = False) -> None:
    """Write the Tasks whose ids do not exist yet, as one batch. A concurrent run that wrote some of
    them meanwhile makes the batch fail on their ids: what is still missing is then written, once."""
    if not tasks:
        return
    existing = _existing(tasks)
    items = [("Task", i, checked_body("Task", b), "POST") for i, b in tasks.items() if i not in existing]
    if not items:
        return
    if again:
        run.created.extend(insert_many(items))
        return
    try:
        with transaction.atomic():
            run.created.extend(insert_many(items))
    except IntegrityError:
        create_missing(ctx, tasks, run, again=True)


def open_tasks(ctx: AccessContext, plan_id: str) -> list[Resource]:
    """The plan's materialised Tasks nobody has moved on yet."""
    condition = criteria_filter(
        ctx,
        "Task",
        [
            ("based-on", f"CarePlan/{plan_id}"),
            ("identifier", f"{OCCURRENCE_SYSTEM}|"),
            ("status", ",".join(_OPEN)),
        ],
    )
    rows = Resource.objects.system("careplan scheduling: a plan's open Tasks").filter(condition)
    # Only the plan's own occurrences (their identifier names the plan), whatever else points at it.
    return [row for row in rows if _occurrence_of(fhirjson.loads(row.body), plan_id)]


def _occurrence_of(task: dict, plan_id: str) -> bool:
    return any(
        i.get("system") == OCCURRENCE_SYSTEM and str(i.get("value", "")).startswith(f"{plan_id}/")
        for i in task.get("identifier") or []
    )


def _set_status(ctx: AccessContext, row: Resource, body: dict, status: str, reason: str, run: Run) -> None:
    body = {**body, "status": status}
    if reason:
        body["statusReason"] = {"text": reason}
    else:
        body.pop("statusReason", None)
    result = resource_update(ctx, resource_type="Task", fhir_id=row.fhir_id, body=body)
    run.changed.append(result.stored)


# --- runs ------------------------------------------------------------------------------------------


def plan(ctx: AccessContext, careplan_pk: int, *, now: datetime, run: Run) -> None:
    """Plan one CarePlan again after a change (or for the first time), and record how far."""
    row = (
        Resource.objects.system("careplan scheduling")
        .filter(pk=careplan_pk, resource_type="CarePlan")
        .first()
    )
    if row is None:
        return
    body = fhirjson.loads(row.body) if not row.deleted else {}
    is_eligible = not row.deleted and activities.eligible(body, all_active=settings.FHIR_CAREPLAN_ALL_ACTIVE)
    end = now + horizon()
    wanted = desired(ctx, row, start=now, end=end, now=now, run=run) if is_eligible else {}
    held = not row.deleted and body.get("status") == "on-hold"
    for task_row in open_tasks(ctx, row.fhir_id):
        task = fhirjson.loads(task_row.body)
        begins = fhirdates.start_of(((task.get("restriction") or {}).get("period") or {}).get("start"))
        if begins is None or begins < now:
            continue  # its window has begun: the past is not rewritten
        if task_row.fhir_id in wanted:
            if task["status"] == "on-hold":
                _set_status(ctx, task_row, task, "requested", "", run)
        elif held:
            if task["status"] != "on-hold":
                _set_status(ctx, task_row, task, "on-hold", _HELD_PLAN, run)
        else:
            reason = _CHANGED_PLAN if is_eligible else _STOPPED_PLAN
            _set_status(ctx, task_row, task, "cancelled", reason, run)
    create_missing(ctx, wanted, run)
    Schedule.objects.update_or_create(
        careplan_pk=careplan_pk,
        defaults={
            "fhir_id": row.fhir_id,
            "version": row.version,
            "until": end if is_eligible else None,
            "dirty": False,
            "active": is_eligible,
            "warnings": "\n".join(run.warnings)[:10000],
        },
    )


def extend(ctx: AccessContext, schedules: list[Schedule], *, now: datetime, run: Run) -> None:
    """Move the horizon of unchanged plans to now + horizon: only the new end of the window."""
    end = now + horizon()
    rows = {
        r.pk: r
        for r in Resource.objects.system("careplan scheduling").filter(
            resource_type="CarePlan", pk__in=[s.careplan_pk for s in schedules]
        )
    }
    tasks: dict[str, dict] = {}
    moved: list[int] = []
    for schedule in schedules:
        row = rows.get(schedule.careplan_pk)
        if row is None or row.deleted or row.version != schedule.version:
            Schedule.objects.filter(pk=schedule.pk).update(dirty=True)  # changed: planned again in full
            continue
        start = max(schedule.until or now, now)
        if start < end:
            tasks.update(desired(ctx, row, start=start, end=end, now=now, run=run))
        moved.append(schedule.pk)
    create_missing(ctx, tasks, run)
    Schedule.objects.filter(pk__in=moved).update(until=end)


def window(
    ctx: AccessContext,
    careplan_pk: int,
    *,
    start: datetime,
    end: datetime,
    now: datetime,
    run: Run,
    dry_run: bool = False,
) -> None:
    """`$materialize` over an explicit window: the plan's missing Tasks in it, created, or with
    `dry_run` only previewed."""
    row = Resource.objects.system("careplan scheduling").filter(pk=careplan_pk).first()
    if row is None or row.deleted:
        return
    if not activities.eligible(fhirjson.loads(row.body), all_active=settings.FHIR_CAREPLAN_ALL_ACTIVE):
        run.warnings.append(f"CarePlan/{row.fhir_id} is not eligible for scheduling (status, intent or tag)")
        return
    tasks = desired(ctx, row, start=start, end=end, now=now, run=run)
    if dry_run:
        existing = _existing(tasks)
        run.previewed.extend(body for fhir_id, body in tasks.items() if fhir_id not in existing)
    else:
        create_missing(ctx, tasks, run)


def _due(ctx: AccessContext, now: datetime) -> list[Resource]:
    """Tasks to move on: `requested` ones whose window opened, and (with an overdue status) `ready`
    ones whose window ended (`eb`: the period ends before now); a bounded batch of each."""
    stamp = _instant(now)
    asks = [[("status", "requested"), ("period", f"le{stamp}")]]
    if settings.FHIR_CAREPLAN_OVERDUE_STATUS:
        asks.append([("status", "ready"), ("period", f"eb{stamp}")])
    found: list[Resource] = []
    for ask in asks:
        condition = criteria_filter(ctx, "Task", [("identifier", f"{OCCURRENCE_SYSTEM}|"), *ask])
        rows = Resource.objects.system("careplan scheduling: Tasks whose window opened").filter(condition)
        found.extend(rows.order_by("pk")[: settings.FHIR_CAREPLAN_ADVANCE_BATCH])
    return found


def advance_due(ctx: AccessContext, *, now: datetime) -> bool:
    """Whether a window opened or closed since the last run (so a run has something to record)."""
    return bool(_due(ctx, now))


def advance(ctx: AccessContext, *, now: datetime, run: Run) -> None:
    """Occurrence windows that opened make their Tasks `ready`; windows that closed unfulfilled make
    them overdue (FHIR_CAREPLAN_OVERDUE_STATUS, e.g. `failed`, or nothing)."""
    overdue = settings.FHIR_CAREPLAN_OVERDUE_STATUS
    for row in _due(ctx, now):
        task = fhirjson.loads(row.body)
        period = (task.get("restriction") or {}).get("period") or {}
        ends = fhirdates.start_of(period.get("end"))
        if ends is not None and ends <= now:
            if overdue:
                _set_status(ctx, row, task, overdue, "Not done within its window", run)
        elif task["status"] == "requested":
            _set_status(ctx, row, task, "ready", "", run)


def adopt(*, now: datetime) -> int:
    """Schedules for CarePlans the scheduler has never seen (loaded before it ran, or while it was
    off): eligible ones are then extended in batches from now, the others only remembered. Returns
    how many eligible plans were adopted."""
    known = Schedule.objects.values("careplan_pk")
    rows = (
        Resource.objects.system("careplan scheduling: plans never scheduled")
        .filter(resource_type="CarePlan", deleted=False)
        .exclude(pk__in=known)
        .only("pk", "fhir_id", "version", "body")
    )
    adopted, batch = 0, []
    for row in rows.iterator(chunk_size=1000):
        eligible = activities.eligible(fhirjson.loads(row.body), all_active=settings.FHIR_CAREPLAN_ALL_ACTIVE)
        adopted += eligible
        batch.append(
            Schedule(
                careplan_pk=row.pk, fhir_id=row.fhir_id, version=row.version, dirty=False, active=eligible
            )
        )
        if len(batch) >= 1000:
            Schedule.objects.bulk_create(batch, ignore_conflicts=True)
            batch = []
    Schedule.objects.bulk_create(batch, ignore_conflicts=True)
    return adopted
