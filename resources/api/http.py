"""HTTP plumbing shared by the interaction views: content negotiation, request bodies, Prefer,
ETags, `_pretty`/`_summary`/`_elements`, and turning FhirError into an OperationOutcome response.

https://hl7.org/fhir/R4/http.html#mime-type, #ops (Prefer), #versioning (ETag), search.html#summary.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
from collections.abc import Callable
from email.utils import format_datetime, parsedate_to_datetime

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from audit.services import settle, undo_last
from authz.authentication import authenticate
from authz.context import AccessContext

from .. import definitions, fhirjson, limits
from ..outcomes import FhirError, Issue, bad_request, error, operation_outcome
from ..services import Stored

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json; charset=utf-8"
_JSON_TYPES = ("application/fhir+json", "application/json", "application/json+fhir", "text/json")
_SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}


def fhir_view(view: Callable[..., HttpResponse] | None = None, *, public: bool = False):
    """Wrap an interaction view: authenticate the caller (unless the view is `public`), negotiate the
    format, map errors to OperationOutcome, never leak a traceback."""
    if view is None:
        return functools.partial(fhir_view, public=public)

    @csrf_exempt
    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        audited = not public and settings.FHIR_AUDIT
        write = audited and request.method not in ("GET", "HEAD")
        try:
            # A write and its audit row commit together or not at all (the services' own atomic
            # blocks join this one).
            try:
                with transaction.atomic() if write else contextlib.nullcontext():
                    response = _answer(view, request, public, args, kwargs)
                    if write and response.status_code < 400:
                        _audit(request, kwargs, response.status_code)
            except BaseException:
                if write:
                    undo_last()
                raise
            if write:
                settle()
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
        if audited and not (
            write and response.status_code < 400 and not getattr(request, "_audit_failed", False)
        ):
            response = _audit_after(request, kwargs, response)
        ctx = getattr(request, "fhir_context", None)
        if ctx is not None:
            response["X-Request-Id"] = ctx.request_id
        return response

    return wrapper


def _answer(view, request: HttpRequest, public: bool, args, kwargs) -> HttpResponse:
    if not public:
        ctx = context(request)  # a bad credential is refused before anything else is looked at
        if request.headers.get("X-Explain", "").lower() == "true" and settings.FHIR_EXPLAIN:
            explained = _explain(request, ctx, kwargs)
            if explained is not None:
                return explained
    check_accept(request)
    return view(request, *args, **kwargs)


def _audit(request: HttpRequest, kwargs: dict, status: int, reason: str = "") -> None:
    """The request's audit row; raises when it cannot be written (the request then fails)."""
    from audit.services import record
    from authz.explain import operation_of

    ctx = getattr(request, "fhir_context", None) or AccessContext.public()
    operation, resource_type, fhir_id = operation_of(request.method, request.path, kwargs)
    # A 404 may hide a resource the rules refused; it is recorded as a failure, like a missing one,
    # so the log does not tell the two apart either (the rule columns say which rule allowed what).
    outcome = "success" if status < 400 else "denied" if status in (401, 403) else "failure"
    try:
        record(
            ctx,
            http_method=request.method,
            path=request.path,
            operation=operation,
            resource_type=resource_type,
            resource_id=fhir_id or "",
            query=request.META.get("QUERY_STRING", ""),
            outcome=outcome,
            status=status,
            reason=reason,
            client_ip=request.META.get("REMOTE_ADDR") or None,
            user_agent=request.headers.get("User-Agent", ""),
        )
    except Exception:
        request._audit_failed = True
        log.exception("Could not write the audit row of %s %s", request.method, request.path)
        raise


def _audit_after(request: HttpRequest, kwargs: dict, response: HttpResponse) -> HttpResponse:
    """Audit a read, a refusal or a failed write after the fact; if even that fails, so does the
    request (nothing is served unaudited)."""
    reason = ""
    if response.status_code >= 400 and response.get("Content-Type", "").startswith("application/fhir+json"):
        try:
            reason = json.loads(response.content)["issue"][0]["diagnostics"]
        except (ValueError, KeyError, IndexError, TypeError):
            reason = ""
    try:
        _audit(request, kwargs, response.status_code, reason)
    except Exception:
        return outcome_response(500, [Issue("exception", "The request could not be audited")], {}, request)
    settle()
    return response


def _explain(request: HttpRequest, ctx: AccessContext, kwargs: dict) -> HttpResponse | None:
    """The rule chain's verdict on this request instead of its answer (Admin callers only); the
    X-Explain-Role / X-Explain-Identity headers evaluate it as another caller."""
    from authz.explain import explain, operation_of

    if ctx.role != "Admin":
        return None
    role = request.headers.get("X-Explain-Role") or ctx.role
    identity = request.headers.get("X-Explain-Identity") or (ctx.identity if role == ctx.role else None)
    subject = AccessContext(role=role, identity=identity or None, request_id=ctx.request_id, method="explain")
    operation, resource_type, fhir_id = operation_of(request.method, request.path, kwargs)
    issues = explain(subject, operation, resource_type, fhir_id)
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
