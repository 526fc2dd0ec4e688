"""Test helpers: resources rows and their index rows written directly, searched through build_criteria.

Rows are made by hand rather than through the write service so that each test controls exactly which
index rows exist (an edge case such as an open Period or a reference with only an identifier), and
stays independent of what the indexer extracts.
"""

from __future__ import annotations

import itertools
from datetime import datetime
from urllib.parse import parse_qsl

import pytest
from django.db.models import Model
from django.utils import timezone

from resources.fhirdates import parse_range
from resources.models import Resource
from resources.outcomes import FhirError
from resources.search.criteria import Criteria, build_criteria

_ids = itertools.count(1)


def resource(
    resource_type: str,
    fhir_id: str | None = None,
    *,
    last_updated: datetime | None = None,
    deleted: bool = False,
) -> Resource:
    return Resource.objects.system("test").create(
        resource_type=resource_type,
        fhir_id=fhir_id or f"r{next(_ids)}",
        version=1,
        last_updated=last_updated or timezone.now(),
        deleted=deleted,
        body="" if deleted else "{}",
    )


def index(model: type[Model], row: Resource, param: str, **fields) -> None:
    model.objects.create(resource=row, resource_type=row.resource_type, param=param, **fields)


_DATE = object()


def date_range(start: str | None, end: str | None | object = _DATE) -> dict:
    """low/high columns of a date (one argument) or of a Period `start`..`end` (None = open side)."""
    if end is _DATE:
        low, high = parse_range(start)
        return {"low": low, "high": high}
    return {
        "low": parse_range(start)[0] if start else None,
        "high": parse_range(end)[1] if end else None,
    }


def pairs(query: str | list[tuple[str, str]]) -> list[tuple[str, str]]:
    if isinstance(query, list):
        return query
    return parse_qsl(query, keep_blank_values=True)


def system_rows(resource_type: str):
    return Resource.objects.system("test")


def criteria(resource_type: str, query, *, strict: bool = True, **options) -> Criteria:
    options.setdefault("rows", system_rows)
    return build_criteria(resource_type, pairs(query), strict=strict, **options)


def ids(resource_type: str, query, *, strict: bool = True, **options) -> set[str]:
    found = criteria(resource_type, query, strict=strict, **options)
    rows = Resource.objects.system("test").filter(resource_type=resource_type, deleted=False).filter(found.q)
    return set(rows.values_list("fhir_id", flat=True))


def refused(resource_type: str, query, *, strict: bool = True) -> FhirError:
    with pytest.raises(FhirError) as caught:
        criteria(resource_type, query, strict=strict)
    assert caught.value.status == 400
    return caught.value


def diagnostics(error: FhirError) -> str:
    return error.issues[0].diagnostics
