"""`GET [base]/Subscription/[id]/$status` (Subscriptions R5 Backport IG, R4 form): the subscription's
status, event count and last error. Needs `read` on that Subscription; one the caller may not read
answers like a missing one."""

from django.http import HttpRequest, HttpResponse

from interactions import notify as door

from .. import fhirjson
from ..outcomes import not_found
from .http import context, json_response


def status(request: HttpRequest, fhir_id: str) -> HttpResponse:
    if not fhirjson.is_valid_id(fhir_id):
        raise not_found(f"Subscription/{fhir_id} is not known")
    bundle = door.subscription_status(context(request), resource_type="Subscription", fhir_id=fhir_id)
    return json_response(fhirjson.dumps(bundle), 200, request)
