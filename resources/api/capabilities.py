"""capabilities: `GET [base]/metadata` (https://hl7.org/fhir/R4/http.html#capabilities,
https://hl7.org/fhir/R4/capabilitystatement.html).

The statement is built from the shipped R4 definitions and lists only what this server does: per
type, every search parameter the search engine evaluates (criteria.supported_parameters) with its
type and definition, the `_include`/`_revinclude` values it accepts, and `$everything` on Patient;
at system level, search across types with the common parameters and the compartments it searches,
and the WebSocket endpoint of Subscriptions (subscription.html#2.46.7.2: the extension
capabilitystatement-websocket on `rest`, a ws:// URL, or wss:// when the base is https).
"""

import functools

from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from authz.views import oauth_urls

from .. import definitions, fhirjson
from ..search import include
from ..search.criteria import supported_parameters
from ..search.engine import COMMON_PARAMS
from .http import base_url, json_response

_INTERACTIONS = [
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
]
_EVERYTHING = {
    "name": "everything",
    "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
    "documentation": "The patient, their Patient compartment and the Organizations, Practitioners, "
    "Medications, Locations... these refer to; _since, _type and _count supported",
}
_STATUS = {
    "name": "status",
    "definition": "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-status",
    "documentation": "GET Subscription/[id]/$status: the subscription's status, events since it started "
    "and last error, as the Subscriptions R5 Backport IG gives it for R4",
}
_COMPARTMENT_URL = "http://hl7.org/fhir/CompartmentDefinition/{}"


def _search_params(resource_type: str) -> list[dict]:
    return [
        {"name": code, "definition": param.url, "type": param.type}
        for code, param in supported_parameters(resource_type).items()
    ]


@functools.cache
def _rest_resources() -> tuple:
    out = []
    for resource_type in sorted(definitions.resource_types()):
        entry = {
            "type": resource_type,
            "profile": f"http://hl7.org/fhir/StructureDefinition/{resource_type}",
            "interaction": [{"code": code} for code in _INTERACTIONS],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": True,
            "conditionalCreate": True,
            "conditionalRead": "not-supported",
            "conditionalUpdate": True,
            "conditionalDelete": "single",
            "searchInclude": include.capability_includes(resource_type),
            "searchRevInclude": include.capability_revincludes(resource_type),
            "searchParam": _search_params(resource_type),
        }
        if not entry["searchRevInclude"]:
            del entry["searchRevInclude"]
        if resource_type == "Patient":
            entry["operation"] = [_EVERYTHING]
        if resource_type == "Subscription":
            entry["operation"] = [_STATUS]
        if resource_type == "AuditEvent":
            entry = _audit_event(entry)
        out.append(entry)
    return tuple(out)


def _audit_event(entry: dict) -> dict:
    """AuditEvent (audit/api.py): client AuditEvents are ordinary resources, with every interaction;
    searches also return the server's own audit log entries, which are read-only."""
    return {
        **entry,
        "documentation": "AuditEvents that clients record (for example under IHE BALP) are stored like "
        "any resource, under the access rules. Searches (sorted by date only: _sort=-date, the "
        "default, or date) also return the entries of the server's own audit log to roles a rule "
        "grants AuditEvent with validator Allowed and no property filters: those have ids made of "
        "digits, carry the tag urn:fhirplatform:audit|server-log, name fhirplatform as "
        "source.observer, answer read and vread (version 1) and can be neither written nor "
        "deleted; they are searched by date, _lastUpdated, agent, entity, patient, outcome, "
        "subtype, action, _id and _tag, and a search by any other parameter leaves them out. "
        "History, conditional interactions and includes concern client AuditEvents only.",
    }


@functools.cache
def _system_search_params() -> tuple:
    params = supported_parameters("Basic")
    return tuple(
        {"name": code, "definition": params[code].url, "type": params[code].type}
        for code in COMMON_PARAMS
        if code in params
    )


def _security(request: HttpRequest) -> dict:
    """SMART on FHIR's declaration of the OAuth endpoints (conformance.html#using-cors, oauth-uris)."""
    urls = oauth_urls(request)
    return {
        "extension": [
            {
                "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                "extension": [
                    {"url": name, "valueUri": urls[name]}
                    for name in ("authorize", "token", "revoke", "introspect")
                ],
            }
        ],
        "service": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                        "code": "SMART-on-FHIR",
                    }
                ],
                "text": "OAuth 2.0 with SMART on FHIR scopes; also API tokens and JWTs of trusted OpenID Connect issuers",
            }
        ],
    }


_WEBSOCKET_EXTENSION = "http://hl7.org/fhir/StructureDefinition/capabilitystatement-websocket"


def websocket_url(base: str) -> str:
    """The WebSocket endpoint beside the FHIR base (fhirplatform/asgi.py): `[base]/websocket`."""
    scheme, sep, rest = base.partition("://")
    return {"https": "wss", "http": "ws"}.get(scheme.lower(), scheme) + sep + rest + "/websocket"


def capabilities(request: HttpRequest) -> HttpResponse:
    statement = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": fhirjson.instant(timezone.now()),
        "publisher": "fhirplatform",
        "kind": "instance",
        "software": {"name": "fhirplatform", "version": "0.1.0"},
        "implementation": {"description": "fhirplatform FHIR R4 server", "url": base_url(request)},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json", "application/fhir+json"],
        "rest": [
            {
                "extension": [{"url": _WEBSOCKET_EXTENSION, "valueUri": websocket_url(base_url(request))}],
                "mode": "server",
                "security": _security(request),
                "resource": list(_rest_resources()),
                "interaction": [
                    {"code": "transaction"},
                    {"code": "batch"},
                    {"code": "search-system"},
                    {"code": "history-system"},
                ],
                "searchParam": list(_system_search_params()),
                "compartment": [
                    _COMPARTMENT_URL.format(name.lower()) for name in sorted(definitions.compartments())
                ],
            }
        ],
    }
    return json_response(fhirjson.dumps(statement), 200, request)
