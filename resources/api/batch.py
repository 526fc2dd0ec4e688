"""batch and transaction: `POST [base]` with a Bundle (https://hl7.org/fhir/R4/http.html#transaction)."""

from http import HTTPStatus

from django.http import HttpRequest, HttpResponse

from interactions import bundle as door

from ..outcomes import information
from . import bundles
from .http import base_url, context, json_response, prefer_return, read_body
from .paging import PAGE_PARAM, page_size
from .search import last, searchset, summary_mode, total_mode


def batch(request: HttpRequest) -> HttpResponse:
    outcome = door.batch(context(request), bundle=read_body(request), search_options=_search_options)
    wanted = prefer_return(request)
    base = base_url(request)
    entries = [_entry(base, entry, wanted) for entry in outcome.entries]
    text = bundles.bundle(f"{outcome.kind}-response", entries)
    return json_response(text, 200, request)


def _search_options(params: list[tuple[str, str]]) -> tuple[int, str | None, str | None]:
    summary = summary_mode(params)
    count = 0 if summary == "count" else page_size(None, params)
    return count, last(params, PAGE_PARAM), "accurate" if summary == "count" else total_mode(params)


def _entry(base: str, entry: door.BundleEntry, wanted: str) -> str:
    result = entry.result
    if result.search is not None:
        return _search_entry(base, entry)
    stored = result.stored
    status = bundles_status(result.status)
    if stored is None:
        response = {"status": status}
        if result.outcome is not None:
            response["outcome"] = result.outcome
        return bundles.entry(None, response=response)
    response = bundles.response_fields(stored, status, location=result.location)
    shown = entry.shown
    resource = shown.body if wanted == "representation" and shown is not None and not shown.deleted else None
    if wanted == "OperationOutcome":
        response["outcome"] = information(status)
    return bundles.entry(
        resource,
        fullUrl=bundles.full_url(base, stored) if not stored.deleted else None,
        response=response,
    )


def bundles_status(code: int) -> str:
    return f"{code} {HTTPStatus(code).phrase}"


def _search_entry(base: str, entry: door.BundleEntry) -> str:
    """A GET search entry, answered with its searchset Bundle (or the error of the search)."""
    if entry.search_error is not None:
        exc = entry.search_error
        return bundles.entry(None, response={"status": bundles_status(exc.status), "outcome": exc.outcome()})
    resource_type, params = entry.result.search
    text = searchset(base, entry.page, f"{base}/{resource_type}", params, summary=summary_mode(params))
    return bundles.entry(text, response={"status": "200 OK"})
