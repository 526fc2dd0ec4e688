"""Helpers for the result-side search tests (test_results_*.py): resources are written through the
write service, so their index and compartment rows are the ones the indexer produces, and searched
through `engine.search` as the API would."""

from __future__ import annotations

import itertools
import json
from urllib.parse import parse_qsl

from authz.context import AccessContext
from resources.search.engine import SearchPage, search
from resources.services import resource_create, resource_delete

SYSTEM = AccessContext.system("tests")
_serial = itertools.count(1)


def create(resource_type: str, **fields) -> str:
    """Create a valid resource of `resource_type` with `fields`; returns its id."""
    body = {"resourceType": resource_type, **_DEFAULTS.get(resource_type, {}), **fields}
    return resource_create(SYSTEM, resource_type=resource_type, body=body).stored.fhir_id


def delete(resource_type: str, fhir_id: str) -> None:
    resource_delete(SYSTEM, resource_type=resource_type, fhir_id=fhir_id)


def patient(family: str | None = None, **fields) -> str:
    if family is not None:
        fields.setdefault("name", [{"family": family}])
    return create("Patient", **fields)


def observation(subject: str | None = None, **fields) -> str:
    if subject is not None:
        fields.setdefault("subject", {"reference": subject})
    return create("Observation", **fields)


def run(
    resource_type: str | None,
    query: str = "",
    *,
    count: int = 20,
    cursor: str | None = None,
    total: str | None = None,
    strict: bool = False,
    compartment: tuple[str, str] | None = None,
) -> SearchPage:
    return search(
        SYSTEM,
        resource_type=resource_type,
        params=parse_qsl(query, keep_blank_values=True),
        count=count,
        cursor=cursor,
        total=total,
        strict=strict,
        compartment=compartment,
    )


def ids(page: SearchPage) -> list[str]:
    return [stored.fhir_id for stored in page.matches]


def included(page: SearchPage) -> list[str]:
    return [f"{stored.resource_type}/{stored.fhir_id}" for stored in page.included]


def body(stored) -> dict:
    return json.loads(stored.body)


def unique_code() -> str:
    return f"code-{next(_serial)}"


_DEFAULTS = {
    "Observation": {
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
    },
}
