"""The answer to a successful write: status, Location, ETag, Last-Modified and the body that `Prefer`
asks for (https://hl7.org/fhir/R4/http.html#ops). The body is the result as the writer's read shows
it (interactions/shaping.py); when that read would be refused, the answer carries no body. Warnings
about the written resource (a CarePlan activity the scheduler cannot compute) are issues of the
OperationOutcome that `Prefer: return=OperationOutcome` asks for."""

from django.http import HttpRequest, HttpResponse

from interactions.write import Written

from .. import fhirjson
from ..outcomes import Issue, operation_outcome
from .http import base_url, json_response, prefer_return, version_headers


def write_response(request: HttpRequest, result: Written, message: str) -> HttpResponse:
    stored = result.stored
    wanted = prefer_return(request)
    if wanted == "OperationOutcome":
        issues = [Issue("informational", message, severity="information")]
        issues += [Issue("informational", text, severity="warning") for text in result.warnings]
        response = json_response(fhirjson.dumps(operation_outcome(issues)), result.status, request)
    elif wanted == "minimal" or result.shown is None:
        response = HttpResponse(status=result.status)
    else:
        response = json_response(result.shown.body, result.status, request)
    version_headers(response, stored)
    if result.status == 201:
        location = f"{base_url(request)}/{stored.resource_type}/{stored.fhir_id}/_history/{stored.version}"
        response["Location"] = location
        response["Content-Location"] = location
    return response
