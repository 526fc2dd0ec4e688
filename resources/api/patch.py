"""patch (https://hl7.org/fhir/R4/http.html#patch), by id or by search criteria: JSON Patch sent as
`application/json-patch+json`, or FHIRPath Patch (fhirpatch.html) as a Parameters resource sent as
`application/fhir+json`."""

from django.http import HttpRequest, HttpResponse

from interactions import write as door

from ..outcomes import bad_request
from .http import context, read_body
from .write import write_response

_PATCH_TYPES = ("application/json-patch+json", "application/fhir+json", "application/json")


def _document(request: HttpRequest) -> object:
    operations = read_body(request, allowed=_PATCH_TYPES)
    if request.content_type == _PATCH_TYPES[0]:
        if not isinstance(operations, list):
            raise bad_request("A JSON Patch document must be an array of operations")
    elif not isinstance(operations, dict) or operations.get("resourceType") != "Parameters":
        raise bad_request("A FHIRPath Patch body must be a Parameters resource")
    return operations


def patch(request: HttpRequest, resource_type: str, fhir_id: str) -> HttpResponse:
    result = door.patch(
        context(request),
        resource_type=resource_type,
        fhir_id=fhir_id,
        patch=_document(request),
        if_match=request.headers.get("If-Match"),
    )
    return write_response(request, result, "Patched")


def conditional_patch(request: HttpRequest, resource_type: str) -> HttpResponse:
    result = door.conditional_patch(
        context(request),
        resource_type=resource_type,
        criteria=request.META.get("QUERY_STRING", ""),
        patch=_document(request),
        if_match=request.headers.get("If-Match"),
    )
    return write_response(request, result, "Patched")
