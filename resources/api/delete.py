"""delete and conditional delete (https://hl7.org/fhir/R4/http.html#delete, #cdelete)."""

from django.http import HttpRequest, HttpResponse

from interactions import write as door

from .. import fhirjson
from ..outcomes import information
from .http import context, json_response


def _answer(request: HttpRequest, result) -> HttpResponse:
    message = "Deleted" if result is not None else "Nothing to delete"
    response = json_response(fhirjson.dumps(information(message)), 200, request)
    if result is not None:
        response["ETag"] = f'W/"{result.stored.version}"'
    return response


def delete(request: HttpRequest, resource_type: str, fhir_id: str) -> HttpResponse:
    return _answer(request, door.delete(context(request), resource_type=resource_type, fhir_id=fhir_id))


def conditional_delete(request: HttpRequest, resource_type: str) -> HttpResponse:
    result = door.conditional_delete(
        context(request), resource_type=resource_type, criteria=request.META.get("QUERY_STRING", "")
    )
    return _answer(request, result)
