"""`GET [base]/Patient/[id]/$everything` and `GET [base]/Patient/$everything`
(https://hl7.org/fhir/R4/patient-operation-everything.html): the patient record as a `searchset`
Bundle, paged like a search. What the record holds is documented in resources/search/everything.py.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from interactions import search as door

from .. import fhirdates, fhirjson
from ..outcomes import bad_request, not_found
from ..search import everything as record
from .http import base_url, context
from .paging import PAGE_PARAM, page_size
from .search import last, render, request_params, strict_handling, summary_mode, total_mode

# Operation parameters, plus the framework ones that shape any response.
_KNOWN = {*record.PARAMS, PAGE_PARAM, "_total", "_summary", "_elements", "_format", "_pretty"}


def everything(request: HttpRequest, fhir_id: str | None = None) -> HttpResponse:
    if fhir_id is not None and not fhirjson.is_valid_id(fhir_id):
        raise not_found(f"Patient/{fhir_id} is not known")
    params = request_params(request)
    used, ignored = [], []
    for name, value in params:
        if name in _KNOWN:
            used.append((name, value))
            continue
        if strict_handling(request):
            raise bad_request(
                f"Parameter '{name}' is not supported by $everything (supported: _since, _type, _count)",
                code="not-supported",
                expression=(name,),
            )
        if name not in ignored:
            ignored.append(name)
    summary = summary_mode(params)
    page = door.everything(
        context(request),
        fhir_id=fhir_id,
        since=_since(last(params, "_since")),
        types=_types(params),
        count=0 if summary == "count" else page_size(request, params),
        cursor=last(params, PAGE_PARAM),
        total="accurate" if summary == "count" else total_mode(params),
        used=used,
        ignored=ignored,
    )
    path = f"/Patient/{fhir_id}/$everything" if fhir_id is not None else "/Patient/$everything"
    return render(
        request,
        page,
        base_url(request) + path,
        params,
        summary=summary,
        mode_of=lambda stored: record.entry_mode(stored.resource_type),
    )


def _since(raw: str | None):
    if raw is None:
        return None
    try:
        return fhirdates.parse_range(raw)[0]
    except ValueError as exc:
        raise bad_request(f"_since: {exc}", expression=("_since",)) from exc


def _types(params: list[tuple[str, str]]) -> list[str] | None:
    values = [v for k, v in params if k == "_type"]
    if not values:
        return None
    return [item.strip() for value in values for item in value.split(",") if item.strip()]
