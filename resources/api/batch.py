"""batch and transaction: `POST [base]` with a Bundle (https://hl7.org/fhir/R4/http.html#transaction)."""

from http import HTTPStatus

from django.http import HttpRequest, HttpResponse

from authz.context import AccessContext

from ..outcomes import FhirError, information
from ..search.engine import search as run_search
from ..transaction import EntryResult, process_bundle
from . import bundles
from .http import base_url, context, json_response, prefer_return, read_body
from .paging import PAGE_PARAM, page_size
from .search import last, searchset, summary_mode, total_mode


def batch(request: HttpRequest) -> HttpResponse:
    kind, results = process_bundle(context(request), read_body(request))
    wanted = prefer_return(request)
    base = base_url(request)
    ctx = context(request)
    entries = [_entry(base, result, wanted, ctx) for result in results]
    text = bundles.bundle(f"{kind}-response", entries)
    return json_response(text, 200, request)


def _entry(base: str, result: EntryResult, wanted: str, ctx: AccessContext) -> str:
    if result.search is not None:
        return _search_entry(ctx, base, *result.search)
    stored = result.stored
    status = bundles_status(result.status)
    if stored is None:
        response = {"status": status}
        if result.outcome is not None:
            response["outcome"] = result.outcome
        return bundles.entry(None, response=response)
    response = bundles.response_fields(stored, status, location=result.location)
    resource = stored.body if wanted == "representation" and not stored.deleted else None
    if wanted == "OperationOutcome":
        response["outcome"] = information(status)
    return bundles.entry(
        resource,
        fullUrl=bundles.full_url(base, stored) if not stored.deleted else None,
        response=response,
    )


def bundles_status(code: int) -> str:
    return f"{code} {HTTPStatus(code).phrase}"


def _search_entry(ctx: AccessContext, base: str, resource_type: str, params: list[tuple[str, str]]) -> str:
    """A GET search entry, answered with its searchset Bundle (or the error of the search)."""
    try:
        summary = summary_mode(params)
        page = run_search(
            ctx,
            resource_type=resource_type,
            params=params,
            count=0 if summary == "count" else page_size(None, params),
            cursor=last(params, PAGE_PARAM),
            total="accurate" if summary == "count" else total_mode(params),
            base_urls=(base,),
        )
    except FhirError as exc:
        return bundles.entry(None, response={"status": bundles_status(exc.status), "outcome": exc.outcome()})
    text = searchset(base, page, f"{base}/{resource_type}", params, summary=summary)
    return bundles.entry(text, response={"status": "200 OK"})
