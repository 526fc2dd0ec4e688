"""HTTP plumbing shared by the interaction views: content negotiation, request bodies, Prefer,
ETags, `_pretty`/`_summary`/`_elements`, and turning FhirError into an OperationOutcome response.

https://hl7.org/fhir/R4/http.html#mime-type, #ops (Prefer), #versioning (ETag), search.html#summary.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from email.utils import format_datetime, parsedate_to_datetime

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from authz.authentication import authenticate, origin_of, request_id
from authz.context import AccessContext
from interactions import door
from interactions.types import Stored

from .. import definitions, fhirjson, limits
from ..outcomes import FhirError, Issue, bad_request, error, operation_outcome

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json; charset=utf-8"
_JSON_TYPES = ("application/fhir+json", "application/json", "application/json+fhir", "text/json")
_SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}


def fhir_view(
    view: Callable[..., HttpResponse] | None = None,
    *,
    public: bool = False,
    operations: dict[str, str] | None = None,
):
    """Wrap a route: authenticate the caller (unless the route is `public`), negotiate the format,
    map errors to OperationOutcome, never leak a traceback. `operations` names the interaction each
    HTTP method of the route is (the route declares it; nothing is guessed from the URL): a request
    refused before it reaches the interaction layer is audited under that name."""
    if view is None:
        return functools.partial(fhir_view, public=public, operations=operations)
    declared = operations or {}

    @csrf_exempt
    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        operation = declared.get(request.method, declared.get("GET" if request.method == "HEAD" else ""))
        try:
            response = _answer(view, request, public, operation or "unsupported", args, kwargs)
        except FhirError as exc:
            response = outcome_response(exc.status, exc.issues, exc.headers, request)
        except Exception as exc:
            # Over a limit of resources/limits.py (timeout, too many fields): too-costly, not a 500.
            limited = limits.refusal(exc, request)
            if limited is not None:
                response = outcome_response(limited.status, limited.issues, limited.headers, request)
            else:
                log.exception("Unhandled error in %s %s", request.method, request.path)
                response = outcome_response(500, [Issue("exception", "Internal server error")], {}, request)
        if not public:
            response = _audit_unreached(request, operation or "unsupported", kwargs, response)
        ctx = getattr(request, "fhir_context", None)
        if ctx is not None:
            response["X-Request-Id"] = ctx.request_id
        return response

    return wrapper


def _answer(view, request: HttpRequest, public: bool, operation: str, args, kwargs) -> HttpResponse:
    if not public:
        ctx = context(request)  # a bad credential is refused before anything else is looked at
        if request.headers.get("X-Explain", "").lower() == "true" and settings.FHIR_EXPLAIN:
            explained = _explain(request, ctx, operation, kwargs)
            if explained is not None:
                return explained
    check_accept(request)
    return view(request, *args, **kwargs)


def _audit_unreached(
    request: HttpRequest, operation: str, kwargs: dict, response: HttpResponse
) -> HttpResponse:
    """A request that never reached an interaction (bad credential, body or method) is audited here,
    through the interaction layer; if even that fails, so does the request."""
    ctx = getattr(request, "fhir_context", None)
    if ctx is None:
        ctx = AccessContext.public(request_id(request), origin_of(request))
        request.fhir_context = ctx
    if door.reached(ctx):
        return response
    reason = ""
    if response.status_code >= 400 and response.get("Content-Type", "").startswith("application/fhir+json"):
        try:
            reason = json.loads(response.content)["issue"][0]["diagnostics"]
        except (ValueError, KeyError, IndexError, TypeError):
            reason = ""
    target = (kwargs.get("resource_type") or "", kwargs.get("fhir_id") or "")
    try:
        door.record_outside(ctx, operation, target, response.status_code, reason)
    except Exception:
        log.exception("Could not write the audit row of %s %s", request.method, request.path)
        return outcome_response(500, [Issue("exception", "The request could not be audited")], {}, request)
    return response


def _explain(request: HttpRequest, ctx: AccessContext, operation: str, kwargs: dict) -> HttpResponse | None:
    """The rule chain's verdict on this request instead of its answer (Admin callers only); the
    X-Explain-Role / X-Explain-Identity headers evaluate it as another caller."""
    from authz.explain import explain

    if ctx.role != "Admin":
        return None
    role = request.headers.get("X-Explain-Role") or ctx.role
    identity = request.headers.get("X-Explain-Identity") or (ctx.identity if role == ctx.role else None)
    subject = AccessContext(role=role, identity=identity or None, request_id=ctx.request_id, method="explain")
    issues = explain(subject, operation, kwargs.get("resource_type") or "*", kwargs.get("fhir_id"))
    response = outcome_response(200, issues, {}, request)
    response["X-Request-Id"] = ctx.request_id
    return response


def context(request: HttpRequest) -> AccessContext:
    """The authenticated caller (authz/authentication.py), worked out once per request."""
    ctx = getattr(request, "fhir_context", None)
    if ctx is None:
        ctx = authenticate(request)
        request.fhir_context = ctx
    return ctx


def base_url(request: HttpRequest) -> str:
    return settings.FHIR_BASE_URL.rstrip("/") or request.build_absolute_uri("/fhir")


def check_accept(request: HttpRequest) -> None:
    fmt = request.GET.get("_format")
    if fmt is not None:
        if fmt in ("json", "application/json", "application/fhir+json", "application/json+fhir"):
            return
        raise _not_acceptable(fmt)
    accept = request.headers.get("Accept")
    if not accept:
        return
    for part in accept.split(","):
        media = part.split(";")[0].strip().lower()
        if media in _JSON_TYPES or media in ("*/*", "application/*", "") or media.endswith("+json"):
            return
    raise _not_acceptable(accept)


def _not_acceptable(asked: str) -> FhirError:
    return error(
        406,
        "not-supported",
        f"This server speaks FHIR JSON only (application/fhir+json); '{asked}' cannot be served",
    )


def read_body(request: HttpRequest, *, allowed: tuple[str, ...] = _JSON_TYPES) -> object:
    """The parsed JSON body, after the content-type and size checks (415, 413, 400)."""
    limit = settings.FHIR_MAX_BODY_BYTES
    declared = request.META.get("CONTENT_LENGTH")
    if declared and declared.isdigit() and int(declared) > limit:
        raise error(413, "too-costly", f"Request body larger than the limit of {limit} bytes")
    raw = request.read(limit + 1)
    if len(raw) > limit:
        raise error(413, "too-costly", f"Request body larger than the limit of {limit} bytes")
    if not raw.strip():
        raise bad_request("The request has no body", code="required")
    content_type = request.content_type.lower() if request.content_type else ""
    if content_type not in allowed:
        raise error(
            415,
            "not-supported",
            f"Content-Type '{request.content_type or ''}' is not supported; send {allowed[0]}",
        )
    return fhirjson.loads(raw)


def prefer_return(request: HttpRequest) -> str:
    """'minimal', 'representation' or 'OperationOutcome' from the Prefer header."""
    for part in request.headers.get("Prefer", "").split(";"):
        for item in part.split(","):
            name, _, value = item.strip().partition("=")
            if name == "return" and value.strip('"') in ("minimal", "representation", "OperationOutcome"):
                return value.strip('"')
    return "representation"


def http_date(stored: Stored) -> str:
    return format_datetime(stored.last_updated, usegmt=True)


def version_headers(response: HttpResponse, stored: Stored) -> None:
    response["ETag"] = f'W/"{stored.version}"'
    response["Last-Modified"] = http_date(stored)


def not_modified(request: HttpRequest, stored: Stored) -> bool:
    """If-None-Match / If-Modified-Since say the client's copy is current."""
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None:
        tags = {tag.strip().removeprefix("W/").strip('"') for tag in if_none_match.split(",")}
        return str(stored.version) in tags or "*" in tags
    if_modified_since = request.headers.get("If-Modified-Since")
    if if_modified_since:
        try:
            since = parsedate_to_datetime(if_modified_since)
        except (TypeError, ValueError):
            return False
        return since is not None and stored.last_updated.replace(microsecond=0) <= since
    return False


def json_response(text: str, status: int = 200, request: HttpRequest | None = None) -> HttpResponse:
    if request is not None and request.GET.get("_pretty") == "true":
        text = fhirjson.dumps_pretty(fhirjson.loads(text))
    return HttpResponse(text, status=status, content_type=FHIR_JSON)


def outcome_response(
    status: int, issues: list[Issue], headers: dict[str, str], request: HttpRequest | None = None
) -> HttpResponse:
    response = json_response(fhirjson.dumps(operation_outcome(issues)), status, request)
    for name, value in headers.items():
        response[name] = value
    return response


def shaped_body(request: HttpRequest, stored: Stored) -> str:
    """The stored text, reduced by `_summary` / `_elements` when asked (search.html#summary, #elements)."""
    summary = request.GET.get("_summary")
    elements = request.GET.get("_elements")
    if summary in (None, "false") and not elements:
        return stored.body
    return fhirjson.dumps(subset(fhirjson.loads(stored.body), summary, elements))


def subset(body: dict, summary: str | None, elements: str | None) -> dict:
    resource_type = body["resourceType"]
    if summary not in (None, "false", "true", "text", "data", "count"):
        raise bad_request(f"Unknown _summary value '{summary}' (true, false, text, data, count)")
    if summary == "true":
        keep = definitions.summary_elements(resource_type)
    elif summary == "text":
        keep = definitions.mandatory_elements(resource_type) | {"text"}
    elif summary == "data":
        keep = None
    elif elements:
        keep = definitions.mandatory_elements(resource_type) | {e.strip() for e in elements.split(",")}
    else:
        return body
    out = {}
    for key, value in body.items():
        if key in ("resourceType", "id", "meta"):
            out[key] = value
        elif keep is None:
            if key != "text":
                out[key] = value
        elif key in keep or (key.startswith("_") and key[1:] in keep):
            out[key] = value
    meta = dict(out.get("meta") or {})
    meta["tag"] = [*meta.get("tag", []), _SUBSETTED]
    out["meta"] = meta
    return out
