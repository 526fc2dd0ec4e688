"""history at instance, type and system level (https://hl7.org/fhir/R4/http.html#history)
with `_since`, `_at`, `_count` and keyset paging."""

from django.http import HttpRequest, HttpResponse

from interactions import read as door

from .. import fhirdates
from ..outcomes import bad_request
from . import bundles
from .http import base_url, context, json_response
from .paging import PAGE_PARAM, page_links, page_size

_KNOWN = {"_since", "_at", "_count", PAGE_PARAM, "_format", "_pretty"}


def _instant_param(request: HttpRequest, name: str):
    raw = request.GET.get(name)
    if raw is None:
        return None
    try:
        return fhirdates.parse_range(raw)
    except ValueError as exc:
        raise bad_request(f"{name}: {exc}", expression=(name,)) from exc


def history(
    request: HttpRequest, resource_type: str | None = None, fhir_id: str | None = None
) -> HttpResponse:
    for name in request.GET:
        if name not in _KNOWN:
            raise bad_request(f"Unknown history parameter '{name}'", code="not-supported")
    since = _instant_param(request, "_since")
    page = door.history(
        context(request),
        resource_type=resource_type,
        fhir_id=fhir_id,
        since=since[0] if since else None,
        at=_instant_param(request, "_at"),
        count=page_size(request),
        cursor=request.GET.get(PAGE_PARAM),
    )
    base = base_url(request)
    entries = []
    for item in page.entries:
        stored = item.stored
        url = f"{stored.resource_type}/{stored.fhir_id}"
        request_fields = {
            "method": item.method,
            "url": url if item.method != "POST" else stored.resource_type,
        }
        status = {"POST": "201 Created", "DELETE": "204 No Content"}.get(item.method, "200 OK")
        entries.append(
            bundles.entry(
                None if stored.deleted else stored.body,
                fullUrl=bundles.full_url(base, stored),
                request=request_fields,
                response=bundles.response_fields(stored, status, location=False),
            )
        )
    path = "/".join([base, *(part for part in (resource_type, fhir_id) if part), "_history"])
    links = page_links(path, list(request.GET.items()), page.next_cursor)
    return json_response(bundles.bundle("history", entries, total=page.total, links=links), 200, request)
