"""search at type level, by GET and by POST [type]/_search (https://hl7.org/fhir/R4/http.html#search)."""

from urllib.parse import parse_qsl

from django.http import HttpRequest, HttpResponse

from .. import fhirjson
from ..outcomes import Issue, bad_request, error, operation_outcome
from ..search.engine import search as run_search
from ..services import Stored
from . import bundles
from .http import base_url, context, json_response, subset
from .paging import PAGE_PARAM, page_links, page_size

_FORM = "application/x-www-form-urlencoded"


def _params(request: HttpRequest) -> list[tuple[str, str]]:
    params = [(k, v) for k, values in request.GET.lists() for v in values]
    if request.method == "POST":
        if request.content_type and request.content_type != _FORM:
            raise error(415, "not-supported", f"POST _search takes {_FORM}, not '{request.content_type}'")
        try:
            params += parse_qsl(request.body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError as exc:
            raise bad_request("The search form is not UTF-8") from exc
    return params


def _strict(request: HttpRequest) -> bool:
    return "handling=strict" in request.headers.get("Prefer", "").replace(" ", "")


def search(request: HttpRequest, resource_type: str) -> HttpResponse:
    params = _params(request)
    single = dict(params)
    summary = single.get("_summary")
    total_mode = single.get("_total")
    if total_mode not in (None, "none", "estimate", "accurate"):
        raise bad_request(
            f"Unknown _total value '{total_mode}' (none, estimate, accurate)", expression=("_total",)
        )
    count = 0 if summary == "count" else page_size(request)
    page = run_search(
        context(request),
        resource_type=resource_type,
        params=params,
        count=count,
        cursor=single.get(PAGE_PARAM),
        total="accurate" if summary == "count" else total_mode,
        strict=_strict(request),
    )
    base = base_url(request)
    entries = [_match_entry(base, stored, summary, single.get("_elements")) for stored in page.matches]
    if page.ignored:
        notes = [
            Issue("not-supported", f"Search parameter '{n}' is not supported and was ignored", "warning")
            for n in page.ignored
        ]
        entries.append(bundles.entry(fhirjson.dumps(operation_outcome(notes)), search={"mode": "outcome"}))
    kept = [(k, v) for k, v in params if k not in page.ignored]
    links = page_links(f"{base}/{resource_type}", kept, page.next_cursor)
    return json_response(bundles.bundle("searchset", entries, total=page.total, links=links), 200, request)


def _match_entry(base: str, stored: Stored, summary: str | None, elements: str | None) -> str:
    text = stored.body
    if summary not in (None, "false") or elements:
        text = fhirjson.dumps(subset(fhirjson.loads(text), summary, elements))
    return bundles.entry(text, fullUrl=bundles.full_url(base, stored), search={"mode": "match"})
