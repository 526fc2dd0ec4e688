"""`_count` and paging links shared by history and search (https://hl7.org/fhir/R4/http.html#paging)."""

from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpRequest

from ..outcomes import bad_request

PAGE_PARAM = "_page"


def page_size(request: HttpRequest) -> int:
    raw = request.GET.get("_count")
    if raw is None:
        return settings.FHIR_DEFAULT_COUNT
    if not raw.isdigit():
        raise bad_request(f"_count must be a non-negative integer, not '{raw}'", expression=("_count",))
    return min(int(raw), settings.FHIR_MAX_COUNT)


def link(url: str, params: list[tuple[str, str]]) -> str:
    return f"{url}?{urlencode(params)}" if params else url


def page_links(url: str, params: list[tuple[str, str]], next_cursor: str | None) -> list[tuple[str, str]]:
    """self (the query as understood, without the cursor) and next (the same query plus the cursor)."""
    kept = [(k, v) for k, v in params if k != PAGE_PARAM]
    current = [(k, v) for k, v in params if k == PAGE_PARAM]
    links = [("self", link(url, kept + current))]
    if next_cursor:
        links.append(("next", link(url, [*kept, (PAGE_PARAM, next_cursor)])))
    return links
