"""Matching for conditional interactions (https://hl7.org/fhir/R4/http.html#ccreate, #cond-update,
#cdelete) and transaction conditional references (https://hl7.org/fhir/R4/http.html#trules).

A conditional create, update or delete names its target with search criteria, compiled by the search
engine with strict handling: a criterion the server cannot evaluate is refused rather than ignored,
because ignoring it would match more than the client meant, and a conditional delete would then
remove the wrong resources.
"""

from __future__ import annotations

import functools
from urllib.parse import parse_qsl

from django.db.models import Q

from authz import rules
from authz.context import SYSTEM, AccessContext

from .. import fhirjson
from ..models import Resource
from ..outcomes import bad_request
from . import access
from .criteria import build_criteria

# Candidates the search narrowing lets through are decided one by one as reads; a criteria that
# matches more than this many rows the caller may search but not read finds nothing further.
_MAX_CANDIDATES = 100


def parse_criteria(query: str) -> list[tuple[str, str]]:
    query = query.lstrip("?")
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError as exc:
        raise bad_request(f"Malformed search criteria '{query}'", code="invalid") from exc
    if not pairs:
        raise bad_request("Conditional interaction without search criteria", code="invalid")
    return pairs


def criteria_filter(ctx: AccessContext, resource_type: str, pairs: list[tuple[str, str]]) -> Q:
    """Current resources of `resource_type` matching `pairs`, every parameter understood or a 400."""
    criteria = build_criteria(
        resource_type,
        pairs,
        strict=True,
        rows=access.reachable(ctx),
        guard=access.guard(ctx),
    )
    if not criteria.used:
        raise bad_request("Conditional interaction without search criteria", code="invalid")
    return Q(resource_type=resource_type, deleted=False) & criteria.q


def find_matches(ctx: AccessContext, resource_type: str, query: str, *, limit: int = 2) -> list[Resource]:
    """Up to `limit` current resources of `resource_type` matching `query`, among those the caller may
    search and read: matching is a read, so each candidate is decided as `GET [type]/[id]` would be
    (body-checking rules included). A match it may not read is not revealed, not even by a
    conditional create's outcome."""
    condition = criteria_filter(ctx, resource_type, parse_criteria(query))
    candidates = access.rows(ctx, "search", [resource_type]).filter(condition).order_by("pk")
    if ctx.role == SYSTEM:
        return list(candidates[:limit])
    found: list[Resource] = []
    for row in candidates[:_MAX_CANDIDATES]:
        if rules.readable(ctx, resource_type, row.pk, functools.partial(fhirjson.loads, row.body)):
            found.append(row)
            if len(found) >= limit:
                break
    return found
