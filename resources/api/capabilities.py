"""capabilities: `GET [base]/metadata` (https://hl7.org/fhir/R4/http.html#capabilities).

The statement is built from the shipped R4 definitions and lists only what this server does.
"""

import functools

from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from .. import definitions, fhirjson
from ..search.conditional import SUPPORTED
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
_SEARCH_DOC = {
    "_id": ("token", "Logical id of the resource"),
    "identifier": ("token", "An identifier of the resource (system|value)"),
}


@functools.cache
def _rest_resources() -> tuple:
    out = []
    for resource_type in sorted(definitions.resource_types()):
        params = definitions.search_parameters(resource_type)
        search = [
            {"name": code, "type": _SEARCH_DOC[code][0], "documentation": _SEARCH_DOC[code][1]}
            | ({"definition": params[code].url} if code in params and params[code].url else {})
            for code in SUPPORTED
            if code == "_id" or code in params
        ]
        out.append(
            {
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
                "searchParam": search,
            }
        )
    return tuple(out)


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
        "patchFormat": ["application/json-patch+json"],
        "rest": [
            {
                "mode": "server",
                "resource": list(_rest_resources()),
                "interaction": [{"code": "transaction"}, {"code": "batch"}, {"code": "history-system"}],
            }
        ],
    }
    return json_response(fhirjson.dumps(statement), 200, request)
