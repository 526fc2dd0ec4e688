"""Type-level search entry point (https://hl7.org/fhir/R4/search.html).

The criteria understood today are `_id` and `identifier` (see conditional.py); other parameters are
reported back as not used, as the spec asks of a server that ignores a parameter. Results are ordered
by insertion and keyset-paged, so a page boundary never shifts while rows are inserted.
"""

from __future__ import annotations

from dataclasses import dataclass

from authz.context import AccessContext

from ..models import Resource
from ..outcomes import bad_request
from ..services import Stored, check_type
from .conditional import SUPPORTED, criteria_filter

# Result parameters handled by the API layer rather than as criteria.
RESULT_PARAMS = {"_count", "_page", "_summary", "_elements", "_total", "_format", "_pretty"}


@dataclass(frozen=True)
class SearchPage:
    matches: list[Stored]
    next_cursor: str | None
    total: int | None
    used: list[tuple[str, str]]
    ignored: list[str]


def search(
    ctx: AccessContext,
    *,
    resource_type: str,
    params: list[tuple[str, str]],
    count: int,
    cursor: str | None = None,
    total: str | None = None,
    strict: bool = False,
) -> SearchPage:
    check_type(resource_type)
    used, ignored = [], []
    for name, value in params:
        if name in RESULT_PARAMS:
            continue
        if name in SUPPORTED:
            used.append((name, value))
        elif strict:
            raise bad_request(f"Search parameter '{name}' is not supported", code="not-supported")
        else:
            ignored.append(name)
    rows = (
        Resource.objects.filter(criteria_filter(resource_type, used))
        if used
        else Resource.objects.filter(resource_type=resource_type, deleted=False)
    )
    counted = rows.count() if total == "accurate" or count == 0 else None
    if cursor is not None:
        if not cursor.isdigit() or len(cursor) > 18:
            raise bad_request(f"Invalid paging cursor '{cursor}'")
        rows = rows.filter(pk__gt=int(cursor))
    page = list(
        rows.order_by("pk").values_list("pk", "fhir_id", "version", "last_updated", "body")[: count + 1]
    )
    next_cursor = str(page[count - 1][0]) if count and len(page) > count else None
    if counted is None and cursor is None and len(page) <= count:
        counted = len(page)  # the whole result fits on the first page: the total is free
    matches = [Stored(resource_type, fid, ver, upd, body) for _pk, fid, ver, upd, body in page[:count]]
    return SearchPage(matches, next_cursor, counted, used, ignored)
