"""`_count` and paging links shared by history and search (https://hl7.org/fhir/R4/http.html#paging,
https://hl7.org/fhir/R4/search.html#count).

Links repeat the query as the server understood it (parameters it ignored are left out, as
search.html#errors asks of `self`) and carry the position in `_page`, an opaque cursor.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpRequest

from ..outcomes import bad_request

PAGE_PARAM = "_page"


def page_size(request: HttpRequest, params: list[tuple[str, str]] | None = None) -> int:
    """`_count` from `params` (default: the query string), capped at FHIR_MAX_COUNT."""
    values = [v for k, v in params if k == "_count"] if params is not None else request.GET.getlist("_count")
    if not values:
        return settings.FHIR_DEFAULT_COUNT
    raw = values[-1]
    if not raw.isdigit():
        raise bad_request(f"_count must be a non-negative integer, not '{raw}'", expression=("_count",))
    return min(int(raw), settings.FHIR_MAX_COUNT)


def link(url: str, params: list[tuple[str, str]]) -> str:
    return f"{url}?{urlencode(params)}" if params else url


def page_links(
    url: str,
    params: list[tuple[str, str]],
    next_cursor: str | None,
    previous_cursor: str | None = None,
    *,
    first: bool = False,
) -> list[tuple[str, str]]:
    """self (the query with the current cursor, if any), then first, previous and next when they apply."""
    kept = [(k, v) for k, v in params if k != PAGE_PARAM]
    current = [(k, v) for k, v in params if k == PAGE_PARAM][-1:]
    links = [("self", link(url, kept + current))]
    if first:
        links.append(("first", link(url, kept)))
    if previous_cursor:
        links.append(("previous", link(url, [*kept, (PAGE_PARAM, previous_cursor)])))
    if next_cursor:
        links.append(("next", link(url, [*kept, (PAGE_PARAM, next_cursor)])))
    return links
