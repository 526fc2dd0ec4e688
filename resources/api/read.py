"""read (https://hl7.org/fhir/R4/http.html#read) and vread (#vread)."""

from django.http import HttpRequest, HttpResponse

from interactions import read as door

from .http import context, json_response, not_modified, shaped_body, version_headers


def read(request: HttpRequest, resource_type: str, fhir_id: str) -> HttpResponse:
    stored = door.read(context(request), resource_type=resource_type, fhir_id=fhir_id)
    if not_modified(request, stored):
        response = HttpResponse(status=304)
    else:
        response = json_response(shaped_body(request, stored), 200, request)
    version_headers(response, stored)
    return response


def vread(request: HttpRequest, resource_type: str, fhir_id: str, version: str) -> HttpResponse:
    stored = door.vread(context(request), resource_type=resource_type, fhir_id=fhir_id, version=version)
    response = json_response(shaped_body(request, stored), 200, request)
    version_headers(response, stored)
    return response
