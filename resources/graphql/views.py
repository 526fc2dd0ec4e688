"""The `$graphql` endpoints (https://hl7.org/fhir/R4/graphql.html, OperationDefinition
Resource-graphql): `[base]/$graphql` (system level) and `[base]/[Type]/[id]/$graphql` (the resource
as the root), by GET (`query`, `variables`, `operationName` in the query string) or POST
(`application/json` with those members, or the raw query as `application/graphql`).

The answer is always `application/json` (not FHIR JSON: the result is not a resource), with the
GraphQL `data` and `errors`: 200 once the query runs (refusals of parts of it are error entries),
400 for a request that is not a valid query, 401 for a bad credential, 404 for an instance-level
root that does not exist or that the caller may not read, 405 for another method. Never a 500 with
internals: an unexpected failure is logged and answered as an internal error entry.

A request that never reaches the door (bad credential, bad body, invalid query) is audited here, as
REST's view wrapper does, through `door.record_outside`.
"""

from __future__ import annotations

import json
import logging

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from authz.authentication import authenticate_bearer, origin_of, request_id
from authz.context import AccessContext
from interactions import door

from .. import fhirjson, limits
from ..outcomes import FhirError, error
from .result import Executed, refused

_GRAPHQL = "application/graphql"
_JSON = ("application/json", "application/fhir+json")


@csrf_exempt
def system(request: HttpRequest) -> HttpResponse:
    return _answer(request, None, None)


@csrf_exempt
def instance(request: HttpRequest, resource_type: str, fhir_id: str) -> HttpResponse:
    return _answer(request, resource_type, fhir_id)


def _answer(request: HttpRequest, resource_type: str | None, fhir_id: str | None) -> HttpResponse:
    ctx: AccessContext | None = None
    try:
        ctx = _context(request)
        if request.method not in ("GET", "POST"):
            response = _render(refused(f"{request.method} is not supported on $graphql", 405))
            response["Allow"] = "GET, POST"
        else:
            query, variables, operation_name = _params(request)
            # GraphQL's libraries load with the first GraphQL request, not with every process
            # (management commands, workers) that loads the URL map.
            from . import execute

            result = execute.run(
                ctx,
                query=query,
                variables=variables,
                operation_name=operation_name,
                base_url=_base_url(request),
                resource_type=resource_type,
                fhir_id=fhir_id,
                method=request.method,
            )
            response = _render(result)
    except FhirError as exc:
        response = _render(_from_refusal(exc))
        for name, value in exc.headers.items():
            response[name] = value
    except Exception as exc:
        limited = limits.refusal(exc, request)
        if limited is None:
            logging.getLogger(__name__).exception("Unhandled error in %s %s", request.method, request.path)
            limited = error(500, "exception", "Internal server error")
        response = _render(_from_refusal(limited))
    return _audited(request, ctx, resource_type, fhir_id, response)


def _context(request: HttpRequest) -> AccessContext:
    ctx = getattr(request, "fhir_context", None)
    if ctx is None:
        ctx = authenticate_bearer(
            request.headers.get("Authorization"),
            request_id=request_id(request),
            origin=origin_of(request, "graphql"),
        )
        request.fhir_context = ctx
    return ctx


def _params(request: HttpRequest) -> tuple[str, dict | None, str | None]:
    if request.method == "GET":
        raw = {k: request.GET.get(k) for k in ("query", "variables", "operationName")}
        if raw["variables"]:
            raw["variables"] = _json(raw["variables"], "variables")
    else:
        media = (request.content_type or "").lower()
        if media == _GRAPHQL:
            raw = {"query": _text(_body(request))}
        elif media in _JSON:
            raw = _json(_text(_body(request)), "body")
            if not isinstance(raw, dict):
                raise _bad("The JSON body must be an object with 'query', 'variables' and 'operationName'")
        else:
            raise _bad(f"POST $graphql takes application/json or {_GRAPHQL}, not '{media}'", 415)
    query, variables, name = raw.get("query"), raw.get("variables"), raw.get("operationName")
    if not isinstance(query, str) or not query.strip():
        raise _bad("No query: give 'query'")
    if variables is not None and not isinstance(variables, dict):
        raise _bad("'variables' must be a JSON object")
    if name is not None and not isinstance(name, str):
        raise _bad("'operationName' must be a string")
    return query, variables, name or None


def _body(request: HttpRequest) -> bytes:
    """The body, at most FHIR_MAX_BODY_BYTES (413 beyond, as in REST)."""
    limit = settings.FHIR_MAX_BODY_BYTES
    declared = request.META.get("CONTENT_LENGTH")
    raw = b"" if declared and declared.isdigit() and int(declared) > limit else request.read(limit + 1)
    if len(raw) > limit or (declared and declared.isdigit() and int(declared) > limit):
        raise error(413, "too-costly", f"Request body larger than the limit of {limit} bytes")
    return raw


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _bad("The request body is not UTF-8") from exc


def _json(text: str, what: str):
    try:
        return fhirjson.loads(text)
    except FhirError as exc:
        raise _bad(f"The {what} is not valid JSON") from exc


def _bad(message: str, status: int = 400) -> FhirError:
    return error(status, "invalid" if status == 400 else "not-supported", message)


def _from_refusal(exc: FhirError) -> Executed:
    text = "; ".join(i.diagnostics for i in exc.issues) or "Refused"
    code = exc.issues[0].code if exc.issues else "exception"
    return Executed(None, [{"message": text, "extensions": {"status": exc.status, "code": code}}], exc.status)


def _render(result: Executed) -> HttpResponse:
    body: dict = {}
    if result.errors:
        body["errors"] = result.errors
    if result.data is not None or not result.errors:
        body["data"] = result.data
    # Answered with 200 once executed; a request refused before execution carries its status.
    status = 200 if result.data is not None else result.status
    response = HttpResponse(fhirjson.dumps(body), status=status, content_type="application/json")
    response.graphql_operation = result.operation
    return response


def _base_url(request: HttpRequest) -> str:
    return settings.FHIR_BASE_URL.rstrip("/") or request.build_absolute_uri("/fhir")


def _audited(
    request: HttpRequest, ctx: AccessContext | None, resource_type, fhir_id, response: HttpResponse
) -> HttpResponse:
    """The row of a request that never reached the door; if it cannot be written, neither is the
    answer served."""
    if ctx is None:
        ctx = AccessContext.public(request_id(request), origin_of(request, "graphql"))
    if not door.reached(ctx):
        reason = ""
        try:
            reason = json.loads(response.content)["errors"][0]["message"]
        except (ValueError, KeyError, IndexError, TypeError):
            pass
        # Named after what the query asked for when it could be parsed (Executed.operation).
        operation = getattr(response, "graphql_operation", "graphql-read")
        try:
            door.record_outside(
                ctx, operation, (resource_type or "", fhir_id or ""), response.status_code, reason
            )
        except Exception:
            logging.getLogger(__name__).exception("Could not audit %s %s", request.method, request.path)
            response = _render(refused("The request could not be audited", 500))
    response["X-Request-Id"] = ctx.request_id
    return response
