"""batch and transaction: `POST [base]` with a Bundle (https://hl7.org/fhir/R4/http.html#transaction)."""

from http import HTTPStatus

from django.http import HttpRequest, HttpResponse

from ..outcomes import information
from ..transaction import EntryResult, process_bundle
from . import bundles
from .http import base_url, context, json_response, prefer_return, read_body


def batch(request: HttpRequest) -> HttpResponse:
    kind, results = process_bundle(context(request), read_body(request))
    wanted = prefer_return(request)
    base = base_url(request)
    entries = [_entry(base, result, wanted) for result in results]
    text = bundles.bundle(f"{kind}-response", entries)
    return json_response(text, 200, request)


def _entry(base: str, result: EntryResult, wanted: str) -> str:
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
