"""The answer to a successful write: status, Location, ETag, Last-Modified and the body that `Prefer`
asks for (https://hl7.org/fhir/R4/http.html#ops)."""

from django.http import HttpRequest, HttpResponse

from .. import fhirjson
from ..outcomes import information
from ..services import WriteResult
from .http import base_url, json_response, prefer_return, version_headers


def write_response(request: HttpRequest, result: WriteResult, message: str) -> HttpResponse:
    stored = result.stored
    wanted = prefer_return(request)
    if wanted == "minimal":
        response = HttpResponse(status=result.status)
    elif wanted == "OperationOutcome":
        response = json_response(fhirjson.dumps(information(message)), result.status, request)
    else:
        response = json_response(stored.body, result.status, request)
    version_headers(response, stored)
    if result.status == 201:
        location = f"{base_url(request)}/{stored.resource_type}/{stored.fhir_id}/_history/{stored.version}"
        response["Location"] = location
        response["Content-Location"] = location
    return response
