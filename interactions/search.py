"""search (https://hl7.org/fhir/R4/search.html) at type, system and compartment level, and
Patient `$everything` (https://hl7.org/fhir/R4/patient-operation-everything.html), through the door.
The narrowing, includes and property filters are the search engine's (resources/search/)."""

from __future__ import annotations

from datetime import datetime

from authz.context import AccessContext
from resources.search import engine
from resources.search.engine import SearchPage

from .door import interaction


@interaction("search")
def search(
    ctx: AccessContext,
    *,
    resource_type: str | None,
    params: list[tuple[str, str]],
    count: int,
    cursor: str | None = None,
    total: str | None = None,
    strict: bool = False,
    compartment: tuple[str, str] | None = None,
    base_urls: tuple[str, ...] = (),
) -> SearchPage:
    return engine.search(
        ctx,
        resource_type=resource_type,
        params=params,
        count=count,
        cursor=cursor,
        total=total,
        strict=strict,
        compartment=compartment,
        base_urls=base_urls,
    )


@interaction("everything")
def everything(
    ctx: AccessContext,
    *,
    resource_type: str = "Patient",
    fhir_id: str | None,
    since: datetime | None,
    types: list[str] | None,
    count: int,
    cursor: str | None,
    total: str | None,
    used: list[tuple[str, str]],
    ignored: list[str],
) -> SearchPage:
    return engine.everything(
        ctx,
        patient_id=fhir_id,
        since=since,
        types=types,
        count=count,
        cursor=cursor,
        total=total,
        used=used,
        ignored=ignored,
    )
