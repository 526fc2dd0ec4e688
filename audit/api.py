"""AuditEvent over REST: routes, and the rendering of what the interaction layer answers
(interactions/audit.py; the search and the log's entries are audit/logsearch.py, whose docstring
says how the server's log and client AuditEvents are merged).

Routes (fhirplatform/urls.py sends every `[base]/AuditEvent...` URL here or on to resources/api):
`AuditEvent/<digits>` is an entry of the server's log (read, vread of version 1; writes 405);
`GET AuditEvent?...` and `POST AuditEvent/_search` are the merged search; everything else is the
ordinary interaction of resources/api.
"""

from __future__ import annotations

from email.utils import format_datetime

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from interactions import audit as door
from resources import fhirjson
from resources.api import bundles, routes
from resources.api.http import base_url, context, fhir_view, json_response, subset
from resources.api.paging import page_links, page_size
from resources.api.search import last, request_params, strict_handling, summary_mode, total_mode
from resources.outcomes import Issue, error, operation_outcome

from .fhir import audit_event
from .server_entries import RESOURCE_TYPE, read_only

# --- routing --------------------------------------------------------------------------------------


@csrf_exempt
def type_level(request: HttpRequest, search: str | None = None) -> HttpResponse:
    """`[base]/AuditEvent` and `[base]/AuditEvent/_search`: searches are merged here; create and the
    conditional writes are the ordinary ones (each branch is one wrapped view: one audit row)."""
    if search:
        if request.method == "POST":
            return _search(request, resource_type=RESOURCE_TYPE)
        return routes.type_search(request, resource_type=RESOURCE_TYPE)
    if request.method in ("GET", "HEAD"):
        return _search(request, resource_type=RESOURCE_TYPE)
    return routes.type_level(request, resource_type=RESOURCE_TYPE)


@csrf_exempt
def entry(request: HttpRequest, fhir_id: str) -> HttpResponse:
    """`[base]/AuditEvent/<digits>`: an entry of the server's log."""
    return _entry(request, resource_type=RESOURCE_TYPE, fhir_id=fhir_id)


@csrf_exempt
def entry_version(request: HttpRequest, fhir_id: str, version_id: str) -> HttpResponse:
    """`[base]/AuditEvent/<digits>/_history/<v>`: a log entry has version 1 only."""
    return _entry_version(request, resource_type=RESOURCE_TYPE, fhir_id=fhir_id, version_id=version_id)


@fhir_view(operations={"GET": "read"})
def unsupported(request: HttpRequest, fhir_id: str) -> HttpResponse:
    """History, operations and compartments do not apply to the log's entries, which never change."""
    raise error(
        404,
        "not-supported",
        f"No FHIR interaction at {request.path}: an entry of the server's audit log supports read and "
        "vread (version 1) only",
    )


# --- read and vread of a log entry ------------------------------------------------------------------


@fhir_view(operations={"GET": "read"})
def _entry(request: HttpRequest, resource_type: str, fhir_id: str) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        raise read_only(fhir_id, request.method)
    row = door.audit_read(context(request), resource_type=RESOURCE_TYPE, fhir_id=fhir_id)
    return _entry_response(request, row)


@fhir_view(operations={"GET": "vread"})
def _entry_version(request: HttpRequest, resource_type: str, fhir_id: str, version_id: str) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        raise read_only(fhir_id, request.method, allow="GET, HEAD")
    row = door.audit_vread(context(request), resource_type=RESOURCE_TYPE, fhir_id=fhir_id, version=version_id)
    return _entry_response(request, row)


def _entry_response(request: HttpRequest, row: dict) -> HttpResponse:
    event = audit_event(row)
    summary, elements = request.GET.get("_summary"), request.GET.get("_elements")
    if summary not in (None, "false") or elements:
        event = subset(event, summary, elements)
    response = json_response(fhirjson.dumps(event), 200, request)
    response["ETag"] = 'W/"1"'
    response["Last-Modified"] = format_datetime(row["time"], usegmt=True)
    return response


# --- merged search ----------------------------------------------------------------------------------


@fhir_view(operations={"GET": "search", "POST": "search"})
def _search(request: HttpRequest, resource_type: str) -> HttpResponse:
    params = request_params(request)
    summary = summary_mode(params)
    count = 0 if summary == "count" else page_size(request, params)
    base = base_url(request)
    page = door.audit_search(
        context(request),
        resource_type=RESOURCE_TYPE,
        params=params,
        count=count,
        mode=total_mode(params),
        strict=strict_handling(request),
        base=base,
    )
    served, included, total, ignored = page.served, page.included, page.total, page.ignored
    notes_out, next_cursor = page.notes, page.next_cursor
    elements = last(params, "_elements")
    entries = [_entry_text(base, source, item, summary, elements) for source, item in served]
    entries += [
        bundles.entry(
            _shaped_text(stored.body, summary, None),
            fullUrl=bundles.full_url(base, stored),
            search={"mode": "include"},
        )
        for stored in included
    ]
    outcome = [
        Issue("not-supported", f"Search parameter '{name}' is not supported and was ignored", "warning")
        for name in dict.fromkeys(ignored)
    ] + notes_out
    if outcome:
        entries.append(bundles.entry(fhirjson.dumps(operation_outcome(outcome)), search={"mode": "outcome"}))
    kept = [(k, v) for k, v in params if k not in ignored]
    links = page_links(f"{base}/{RESOURCE_TYPE}", kept, next_cursor, first=True)
    return json_response(bundles.bundle("searchset", entries, total=total, links=links), 200, request)


def _shaped_text(text: str, summary: str | None, elements: str | None) -> str:
    if summary not in (None, "false") or elements:
        return fhirjson.dumps(subset(fhirjson.loads(text), summary, elements))
    return text


def _entry_text(base: str, source: str, item, summary: str | None, elements: str | None) -> str:
    if source == door.LOG:
        text = fhirjson.dumps(audit_event(item))
        url = f"{base}/{RESOURCE_TYPE}/{item['id']}"
    else:
        text, url = item.body, bundles.full_url(base, item)
    return bundles.entry(_shaped_text(text, summary, elements), fullUrl=url, search={"mode": "match"})
