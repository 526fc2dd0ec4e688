"""Matching for conditional interactions (https://hl7.org/fhir/R4/http.html#ccreate).

A conditional create, update or delete names its target with search criteria. A criterion the server
cannot evaluate must be refused rather than ignored: ignoring it would match more than the client
meant, and a conditional delete would then remove the wrong resources.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from django.db.models import Exists, OuterRef, Q

from ..models import Resource, TokenIndex
from ..outcomes import bad_request

SUPPORTED = ("_id", "identifier")


def parse_criteria(query: str) -> list[tuple[str, str]]:
    query = query.lstrip("?")
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError as exc:
        raise bad_request(f"Malformed search criteria '{query}'", code="invalid") from exc
    if not pairs:
        raise bad_request("Conditional interaction without search criteria", code="invalid")
    return pairs


def criteria_filter(resource_type: str, pairs: list[tuple[str, str]]) -> Q:
    condition = Q(resource_type=resource_type, deleted=False)
    for name, value in pairs:
        if name not in SUPPORTED:
            raise bad_request(
                f"Search parameter '{name}' is not supported in conditional criteria "
                f"(supported: {', '.join(SUPPORTED)})",
                code="not-supported",
            )
        if not value:
            raise bad_request(f"Empty value for search parameter '{name}'", code="invalid")
        alternatives = Q()
        for one in value.split(","):
            alternatives |= _id_filter(one) if name == "_id" else _identifier_filter(one)
        condition &= alternatives
    return condition


def _id_filter(value: str) -> Q:
    return Q(fhir_id=value)


def _identifier_filter(value: str) -> Q:
    tokens = TokenIndex.objects.filter(resource=OuterRef("pk"), param="identifier")
    if "|" in value:
        system, code = value.split("|", 1)
        if system:
            tokens = tokens.filter(system=system)
        else:
            tokens = tokens.filter(system__isnull=True)
        if code:
            tokens = tokens.filter(code=code)
    else:
        tokens = tokens.filter(code=value)
    return Q(Exists(tokens))


def find_matches(resource_type: str, query: str, *, limit: int = 2) -> list[Resource]:
    """Up to `limit` current resources of `resource_type` matching `query`."""
    condition = criteria_filter(resource_type, parse_criteria(query))
    return list(Resource.objects.filter(condition).order_by("pk")[:limit])
