"""patch (https://hl7.org/fhir/R4/http.html#patch), by id or by search criteria: JSON Patch sent as
`application/json-patch+json`, or FHIRPath Patch (fhirpatch.html) as a Parameters resource sent as
`application/fhir+json`."""

from django.http import HttpRequest, HttpResponse

from ..outcomes import bad_request, precondition_failed
from ..search.conditional import find_matches
from ..services import check_type, resource_patch
from .http import context, read_body
from .write import write_response

_PATCH_TYPES = ("application/json-patch+json", "application/fhir+json", "application/json")


def patch(request: HttpRequest, resource_type: str, fhir_id: str) -> HttpResponse:
    operations = read_body(request, allowed=_PATCH_TYPES)
    if request.content_type == _PATCH_TYPES[0]:
        if not isinstance(operations, list):
            raise bad_request("A JSON Patch document must be an array of operations")
    elif not isinstance(operations, dict) or operations.get("resourceType") != "Parameters":
        raise bad_request("A FHIRPath Patch body must be a Parameters resource")
    result = resource_patch(
        context(request),
        resource_type=resource_type,
        fhir_id=fhir_id,
        patch=operations,
        if_match=request.headers.get("If-Match"),
    )
    return write_response(request, result, "Patched")


def conditional_patch(request: HttpRequest, resource_type: str) -> HttpResponse:
    check_type(resource_type)
    criteria = request.META.get("QUERY_STRING", "")
    matches = find_matches(context(request), resource_type, criteria)
    if len(matches) != 1:
        found = "no resource" if not matches else "several resources"
        raise precondition_failed(
            f"Conditional patch criteria '{criteria}' match {found}; exactly one is required"
        )
    return patch(request, resource_type, matches[0].fhir_id)
