"""patch with JSON Patch (https://hl7.org/fhir/R4/http.html#patch), by id or by search criteria."""

from django.http import HttpRequest, HttpResponse

from ..outcomes import precondition_failed
from ..search.conditional import find_matches
from ..services import check_type, resource_patch
from .http import context, read_body
from .write import write_response

_PATCH_TYPES = ("application/json-patch+json",)


def patch(request: HttpRequest, resource_type: str, fhir_id: str) -> HttpResponse:
    operations = read_body(request, allowed=_PATCH_TYPES)
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
    matches = find_matches(resource_type, criteria)
    if len(matches) != 1:
        raise precondition_failed(
            f"Conditional patch criteria '{criteria}' match {len(matches) if matches else 'no'}"
            f"{'' if len(matches) < 2 else ' or more'} resources; exactly one is required"
        )
    return patch(request, resource_type, matches[0].fhir_id)
