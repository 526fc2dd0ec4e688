"""create and conditional create (https://hl7.org/fhir/R4/http.html#create, #ccreate)."""

from django.http import HttpRequest, HttpResponse

from interactions import write as door

from .http import context, read_body
from .write import write_response


def create(request: HttpRequest, resource_type: str) -> HttpResponse:
    body = read_body(request)
    result = door.create(
        context(request),
        resource_type=resource_type,
        body=body,
        if_none_exist=request.headers.get("If-None-Exist"),
    )
    message = "Created" if result.status == 201 else "A matching resource exists; nothing was created"
    return write_response(request, result, message)
