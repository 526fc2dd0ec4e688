"""What the scheduler learns from every write, inside the write's or the outbox's transaction.

- From the outbox (subscriptions/outbox.py `on_events`): a CarePlan that was created, updated or
  deleted is marked to be planned again (`Schedule.dirty`), in the transaction that consumes its
  event, whatever wrote it (REST, a transaction, GraphQL, a worker).
- A CarePlan hook: the parts of an eligible plan the scheduler cannot compute (a scheduledString, a
  timing it cannot read) are warnings in the writer's answer (`Prefer: return=OperationOutcome`).
- A Task hook (resources/hooks.py): the identifier system of materialised occurrences belongs to the
  scheduler. A client may not create a Task with it, add it, or change its value, nor change such a
  Task's `basedOn` or `for`; a client may update a materialised Task (its status, its output).
"""

from __future__ import annotations

from django.utils import timezone

from authz.context import SYSTEM, AccessContext
from resources import hooks
from resources.outcomes import error

from .materialize import OCCURRENCE_SYSTEM, warnings_of
from .models import Schedule


def _events(events) -> None:
    plans = {(e.resource_pk, e.fhir_id) for e in events if e.resource_type == "CarePlan"}
    for pk, fhir_id in plans:
        Schedule.objects.update_or_create(careplan_pk=pk, defaults={"fhir_id": fhir_id, "dirty": True})


def _occurrences(body: dict | None) -> list:
    return [i for i in (body or {}).get("identifier") or [] if i.get("system") == OCCURRENCE_SYSTEM]


# What the scheduler owns in a Task it made: which occurrence of which plan, and for whom.
_KEPT = ("basedOn", "for")


def _prepare(ctx: AccessContext, body: dict, previous: dict | None) -> tuple[dict, object]:
    if ctx.role == SYSTEM:
        return body, None
    if _occurrences(body) != _occurrences(previous):
        raise error(
            422,
            "business-rule",
            f"Task.identifier with the system {OCCURRENCE_SYSTEM} is written by the CarePlan scheduler "
            "only; keep it as it is",
            expression=("Task.identifier",),
        )
    if _occurrences(previous):
        for element in _KEPT:
            if body.get(element) != previous.get(element):
                raise error(
                    422,
                    "business-rule",
                    f"Task.{element} of a Task the CarePlan scheduler made cannot be changed",
                    expression=(f"Task.{element}",),
                )
    return body, None


def _nothing(*args) -> None:
    return None


def _careplan(ctx: AccessContext, body: dict, previous: dict | None) -> tuple[dict, object]:
    """A CarePlan is stored as written; what the scheduler cannot compute in it is told to the writer."""
    for text in warnings_of(body, body.get("id") or "", now=timezone.now()):
        hooks.warn(ctx, f"CarePlan scheduling: {text}")
    return body, None


def register() -> None:
    from subscriptions import outbox

    outbox.on_events(_events)
    hooks.register_type("Task", hooks.TypeHook(prepare=_prepare, stored=_nothing, deleted=_nothing))
    hooks.register_type("CarePlan", hooks.TypeHook(prepare=_careplan, stored=_nothing, deleted=_nothing))
