"""create, update, patch and delete, plain and conditional (https://hl7.org/fhir/R4/http.html#create,
#update, #patch, #delete, #ccreate, #cond-update, #cdelete), through the door.

The services (resources/services.py) check the stored state and the proposed state inside the
door's transaction; the door hands back the result shaped as the caller's read of it (shaping.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from authz.context import AccessContext
from resources import hooks, services
from resources.outcomes import precondition_failed
from resources.search.conditional import find_matches
from resources.services import Stored, WriteResult

from .door import interaction
from .shaping import as_read


@dataclass(frozen=True)
class Written:
    """A write's outcome: `stored` is what was written (ids, version, time: safe to tell the writer),
    `shown` the body as the writer's read shows it (None: its read would be refused)."""

    status: int  # 201 created, 200 updated or matched
    stored: Stored
    shown: Stored | None
    warnings: tuple[str, ...] = ()  # parts of the resource the server accepted but cannot act on


def _written(ctx: AccessContext, result: WriteResult) -> Written:
    return Written(result.status, result.stored, as_read(ctx, result.stored), hooks.warnings(ctx))


def _status(written: Written) -> int:
    return written.status


@interaction("create", writes=True, status=_status)
def create(
    ctx: AccessContext, *, resource_type: str, body: object, if_none_exist: str | None = None
) -> Written:
    result = services.resource_create(
        ctx, resource_type=resource_type, body=body, if_none_exist=if_none_exist
    )
    return _written(ctx, result)


@interaction("update", writes=True, status=_status)
def update(
    ctx: AccessContext, *, resource_type: str, fhir_id: str, body: object, if_match: str | None = None
) -> Written:
    result = services.resource_update(
        ctx, resource_type=resource_type, fhir_id=fhir_id, body=body, if_match=if_match
    )
    return _written(ctx, result)


@interaction("update", writes=True, status=_status)
def conditional_update(
    ctx: AccessContext, *, resource_type: str, criteria: str, body: object, if_match: str | None = None
) -> Written:
    result = services.resource_conditional_update(
        ctx, resource_type=resource_type, criteria=criteria, body=body, if_match=if_match
    )
    return _written(ctx, result)


@interaction("patch", writes=True, status=_status)
def patch(
    ctx: AccessContext, *, resource_type: str, fhir_id: str, patch: object, if_match: str | None = None
) -> Written:
    result = services.resource_patch(
        ctx, resource_type=resource_type, fhir_id=fhir_id, patch=patch, if_match=if_match
    )
    return _written(ctx, result)


@interaction("patch", writes=True, status=_status)
def conditional_patch(
    ctx: AccessContext, *, resource_type: str, criteria: str, patch: object, if_match: str | None = None
) -> Written:
    services.check_type(resource_type)
    matches = find_matches(ctx, resource_type, criteria)
    if len(matches) != 1:
        found = "no resource" if not matches else "several resources"
        raise precondition_failed(
            f"Conditional patch criteria '{criteria}' match {found}; exactly one is required"
        )
    result = services.resource_patch(
        ctx, resource_type=resource_type, fhir_id=matches[0].fhir_id, patch=patch, if_match=if_match
    )
    return _written(ctx, result)


@interaction("delete", writes=True)
def delete(ctx: AccessContext, *, resource_type: str, fhir_id: str) -> WriteResult | None:
    """None when there was nothing to delete (deleting is idempotent)."""
    return services.resource_delete(ctx, resource_type=resource_type, fhir_id=fhir_id)


@interaction("delete", writes=True)
def conditional_delete(ctx: AccessContext, *, resource_type: str, criteria: str) -> WriteResult | None:
    return services.resource_conditional_delete(ctx, resource_type=resource_type, criteria=criteria)
