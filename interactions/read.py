"""read, vread and history (https://hl7.org/fhir/R4/http.html#read, #vread, #history) through
the door: each version answered exactly as a read of that version would be."""

from __future__ import annotations

from datetime import datetime

from authz.context import AccessContext
from resources import selectors
from resources.selectors import HistoryPage
from resources.services import Stored

from .door import interaction


@interaction("read")
def read(ctx: AccessContext, *, resource_type: str, fhir_id: str) -> Stored:
    return selectors.resource_read(ctx, resource_type=resource_type, fhir_id=fhir_id)


@interaction("vread")
def vread(ctx: AccessContext, *, resource_type: str, fhir_id: str, version: str) -> Stored:
    return selectors.resource_vread(ctx, resource_type=resource_type, fhir_id=fhir_id, version=version)


@interaction("history")
def history(
    ctx: AccessContext,
    *,
    resource_type: str | None = None,
    fhir_id: str | None = None,
    since: datetime | None = None,
    at: tuple[datetime, datetime] | None = None,
    count: int,
    cursor: str | None = None,
) -> HistoryPage:
    return selectors.resource_history(
        ctx,
        resource_type=resource_type,
        fhir_id=fhir_id,
        since=since,
        at=at,
        count=count,
        cursor=cursor,
    )
