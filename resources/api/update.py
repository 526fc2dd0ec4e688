"""update, update-as-create and conditional update (https://hl7.org/fhir/R4/http.html#update, #cond-update)."""

from django.http import HttpRequest, HttpResponse

from interactions import write as door

from .http import context, read_body
from .write import write_response


def update(request: HttpRequest, resource_type: str, fhir_id: str) -> HttpResponse:
    body = read_body(request)
    result = door.update(
        context(request),
        resource_type=resource_type,
        fhir_id=fhir_id,
        body=body,
        if_match=request.headers.get("If-Match"),
    )
    return write_response(request, result, "Updated" if result.status == 200 else "Created")


def conditional_update(request: HttpRequest, resource_type: str) -> HttpResponse:
    body = read_body(request)
    result = door.conditional_update(
        context(request),
        resource_type=resource_type,
        criteria=request.META.get("QUERY_STRING", ""),
        body=body,
        if_match=request.headers.get("If-Match"),
    )
    return write_response(request, result, "Updated" if result.status == 200 else "Created")
