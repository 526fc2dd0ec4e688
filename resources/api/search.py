"""search (https://hl7.org/fhir/R4/http.html#search, https://hl7.org/fhir/R4/search.html):
type level `GET [base]/[type]?...` and `POST [base]/[type]/_search`, system level `GET [base]?...`
and `POST [base]/_search` (search.html#all), and compartment search
`GET [base]/[Compartment]/[id]/[type]?...` or `.../*` (search.html#compartments).

The answer is a `searchset` Bundle built around the stored resource text: bodies are parsed and
re-serialised only when `_summary` or `_elements` ask for a subset (search.html#summary, #elements).
`_summary` applies to every entry; `_elements` names elements of the searched type, so it applies to
the matches and leaves included resources whole.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qsl

from django.http import HttpRequest, HttpResponse

from interactions import search as door
from interactions.types import SearchPage, Stored

from .. import fhirjson
from ..outcomes import Issue, bad_request, error, not_found, operation_outcome
from ..search.criteria import refuse_nul
from . import bundles
from .http import base_url, context, json_response, subset
from .paging import PAGE_PARAM, page_links, page_size

_FORM = "application/x-www-form-urlencoded"
_SUMMARY_VALUES = ("true", "false", "text", "data", "count")
_TOTAL_VALUES = ("none", "estimate", "accurate")


def request_params(request: HttpRequest) -> list[tuple[str, str]]:
    """The query string, plus the form body of a POST `_search` (http.html#search)."""
    params = [(k, v) for k, values in request.GET.lists() for v in values]
    if request.method == "POST":
        if request.content_type and request.content_type != _FORM:
            raise error(415, "not-supported", f"POST _search takes {_FORM}, not '{request.content_type}'")
        try:
            params += parse_qsl(request.body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError as exc:
            raise bad_request("The search form is not UTF-8") from exc
    for name, value in params:
        refuse_nul(name, value)  # result parameters (_sort, _include...) reach SQL too
    return params


def strict_handling(request: HttpRequest) -> bool:
    """`Prefer: handling=strict` (search.html#errors)."""
    return "handling=strict" in request.headers.get("Prefer", "").replace(" ", "")


def last(params: list[tuple[str, str]], name: str) -> str | None:
    values = [v for k, v in params if k == name]
    return values[-1] if values else None


def total_mode(params: list[tuple[str, str]]) -> str | None:
    mode = last(params, "_total")
    if mode not in (None, *_TOTAL_VALUES):
        raise bad_request(f"Unknown _total value '{mode}' (none, estimate, accurate)", expression=("_total",))
    return mode


def summary_mode(params: list[tuple[str, str]]) -> str | None:
    summary = last(params, "_summary")
    if summary not in (None, *_SUMMARY_VALUES):
        raise bad_request(
            f"Unknown _summary value '{summary}' (true, false, text, data, count)", expression=("_summary",)
        )
    return summary


def search(request: HttpRequest, resource_type: str) -> HttpResponse:
    return _search(request, f"/{resource_type}", resource_type=resource_type)


def system_search(request: HttpRequest) -> HttpResponse:
    return _search(request, "", resource_type=None)


def compartment_search(
    request: HttpRequest, compartment_type: str, compartment_id: str, member_type: str
) -> HttpResponse:
    if not fhirjson.is_valid_id(compartment_id):
        raise not_found(f"{compartment_type}/{compartment_id} is not known")
    return _search(
        request,
        f"/{compartment_type}/{compartment_id}/{member_type}",
        resource_type=None if member_type == "*" else member_type,
        compartment=(compartment_type, compartment_id),
    )


def _search(
    request: HttpRequest,
    path: str,
    *,
    resource_type: str | None,
    compartment: tuple[str, str] | None = None,
) -> HttpResponse:
    params = request_params(request)
    summary = summary_mode(params)
    mode = total_mode(params)
    count = 0 if summary == "count" else page_size(request, params)
    page = door.search(
        context(request),
        resource_type=resource_type,
        params=params,
        count=count,
        cursor=last(params, PAGE_PARAM),
        total="accurate" if summary == "count" else mode,
        strict=strict_handling(request),
        compartment=compartment,
        base_urls=(base_url(request),),
    )
    return render(request, page, base_url(request) + path, params, summary=summary)


def render(
    request: HttpRequest,
    page: SearchPage,
    url: str,
    params: list[tuple[str, str]],
    *,
    summary: str | None,
    mode_of: Callable[[Stored], str] | None = None,
) -> HttpResponse:
    text = searchset(base_url(request), page, url, params, summary=summary, mode_of=mode_of)
    return json_response(text, 200, request)


def searchset(
    base: str,
    page: SearchPage,
    url: str,
    params: list[tuple[str, str]],
    *,
    summary: str | None,
    mode_of: Callable[[Stored], str] | None = None,
) -> str:
    """The searchset Bundle text of one page: matches, included resources, then the outcome entry."""
    elements = last(params, "_elements")
    entries = [
        _entry(base, stored, mode_of(stored) if mode_of else "match", summary, elements)
        for stored in page.matches
    ]
    entries += [_entry(base, stored, "include", summary, None) for stored in page.included]
    notes = [
        Issue("not-supported", f"Search parameter '{name}' is not supported and was ignored", "warning")
        for name in page.ignored
    ] + list(page.notes)
    if notes:
        entries.append(bundles.entry(fhirjson.dumps(operation_outcome(notes)), search={"mode": "outcome"}))
    understood = set(page.used)
    kept = [(k, v) for k, v in params if (k, v) in understood]
    links = page_links(url, kept, page.next_cursor, page.previous_cursor, first=True)
    return bundles.bundle("searchset", entries, total=page.total, links=links)


def _entry(base: str, stored: Stored, mode: str, summary: str | None, elements: str | None) -> str:
    text = stored.body
    if summary not in (None, "false") or elements:
        text = fhirjson.dumps(subset(fhirjson.loads(text), summary, elements))
    return bundles.entry(text, fullUrl=bundles.full_url(base, stored), search={"mode": mode})
