"""FHIR operations that hand out API tokens.

`POST [base]/{Patient|Practitioner|RelatedPerson|Device}/[id]/$api-token` mints a token for that
identity; it needs the `generate-token` operation, so only a rule can grant it. The input is an
optional Parameters resource: `kind` (code: durable | one-time), `lifetime` (integer seconds, 1 to
FHIR_TOKEN_MAX_LIFETIME; 0 or more is a 400, since every token expires) and `label` (string). The secret is in the response once and never
again: it is not stored, only its hash.

`POST [base]/$exchange-token`, authenticated with a one-time token (which that request consumes),
returns a durable token for the same identity and role: the app scanned a QR code with a one-time
token and keeps the durable one. Optional Parameters: `lifetime` (default FHIR_API_TOKEN_TTL, at most
FHIR_TOKEN_MAX_LIFETIME), `label`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.http import HttpRequest, HttpResponse

from interactions import tokens as door
from resources import fhirjson
from resources.api.http import context, fhir_view, json_response
from resources.api.parameters import read_parameters
from resources.outcomes import bad_request, error

if TYPE_CHECKING:
    from .models import ApiToken

_PARAMETERS = {"kind": ("valueCode", "valueString"), "lifetime": ("valueInteger",), "label": ("valueString",)}


@fhir_view(operations={"POST": "generate-token"})
def mint_token(request: HttpRequest, resource_type: str, fhir_id: str) -> HttpResponse:
    _require_post(request)
    minted = door.mint_token(
        context(request),
        resource_type=resource_type,
        fhir_id=fhir_id,
        options=lambda: _options(request, allowed=("kind", "lifetime", "label")),
    )
    return _token_response(minted.token, minted.secret, status=201)


@fhir_view(operations={"POST": "exchange-token"})
def exchange_token(request: HttpRequest) -> HttpResponse:
    _require_post(request)
    minted = door.exchange_token(
        context(request), options=lambda: _options(request, allowed=("lifetime", "label"))
    )
    return _token_response(minted.token, minted.secret, status=201)


def _require_post(request: HttpRequest) -> None:
    if request.method != "POST":
        failure = error(405, "not-supported", f"{request.method} is not supported here (allowed: POST)")
        failure.headers["Allow"] = "POST"
        raise failure


def _options(request: HttpRequest, *, allowed: tuple[str, ...]) -> dict:
    """The operation's input parameters; an empty body means all defaults."""
    keys = {name: _PARAMETERS[name] for name in allowed}
    options = read_parameters(request, keys, operation="this operation")
    for name, value in options.items():
        if isinstance(value, bool) or (name == "lifetime") != isinstance(value, int):
            raise bad_request(f"Parameter '{name}' needs a {keys[name][0]}")
    return options


def _token_response(token: ApiToken, secret: str, *, status: int) -> HttpResponse:
    parameters = [
        {"name": "token", "valueString": secret},
        {"name": "id", "valueString": str(token.pk)},
        {"name": "kind", "valueCode": token.kind},
        {"name": "role", "valueString": token.role},
    ]
    if token.identity:
        parameters.append({"name": "identity", "valueReference": {"reference": token.identity}})
    if token.expires:
        parameters.append({"name": "expires", "valueInstant": token.expires.isoformat()})
    if token.label:
        parameters.append({"name": "label", "valueString": token.label})
    response = json_response(fhirjson.dumps({"resourceType": "Parameters", "parameter": parameters}), status)
    # The secret must not be kept by any cache on the way (RFC 6749 section 5.1 asks the same of token responses).
    response["Cache-Control"] = "no-store"
    response["Pragma"] = "no-cache"
    return response
