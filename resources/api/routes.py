"""Method dispatch for the FHIR URL patterns: each pattern's methods map to one interaction view."""

from django.http import HttpRequest, HttpResponse

from ..outcomes import error
from . import (
    batch,
    capabilities,
    create,
    delete,
    everything,
    history,
    materialize,
    patch,
    read,
    search,
    subscription_status,
    update,
)
from .http import fhir_view


def _method_not_allowed(request: HttpRequest, allowed: str):
    failure = error(
        405, "not-supported", f"{request.method} is not supported on {request.path} (allowed: {allowed})"
    )
    failure.headers["Allow"] = allowed
    return failure


@fhir_view(operations={"GET": "search", "POST": "transaction"})
def system(request: HttpRequest) -> HttpResponse:
    if request.method in ("GET", "HEAD"):
        return search.system_search(request)
    if request.method == "POST":
        return batch.batch(request)
    raise _method_not_allowed(request, "GET, POST")


@fhir_view(operations={"POST": "search"})
def system_search(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        return search.system_search(request)
    raise _method_not_allowed(request, "POST")


@fhir_view(public=True)
def metadata(request: HttpRequest) -> HttpResponse:
    if request.method in ("GET", "HEAD"):
        return capabilities.capabilities(request)
    raise _method_not_allowed(request, "GET")


@fhir_view(operations={"GET": "history"})
def system_history(request: HttpRequest) -> HttpResponse:
    if request.method in ("GET", "HEAD"):
        return history.history(request)
    raise _method_not_allowed(request, "GET")


@fhir_view(
    operations={"GET": "search", "POST": "create", "PUT": "update", "DELETE": "delete", "PATCH": "patch"}
)
def type_level(request: HttpRequest, resource_type: str) -> HttpResponse:
    method = request.method
    if method in ("GET", "HEAD"):
        return search.search(request, resource_type)
    if method == "POST":
        return create.create(request, resource_type)
    if method == "PUT":
        return update.conditional_update(request, resource_type)
    if method == "DELETE":
        return delete.conditional_delete(request, resource_type)
    if method == "PATCH":
        return patch.conditional_patch(request, resource_type)
    raise _method_not_allowed(request, "GET, POST, PUT, PATCH, DELETE")


@fhir_view(operations={"POST": "search"})
def type_search(request: HttpRequest, resource_type: str) -> HttpResponse:
    if request.method == "POST":
        return search.search(request, resource_type)
    raise _method_not_allowed(request, "POST")


@fhir_view(operations={"GET": "history"})
def type_history(request: HttpRequest, resource_type: str) -> HttpResponse:
    if request.method in ("GET", "HEAD"):
        return history.history(request, resource_type)
    raise _method_not_allowed(request, "GET")


@fhir_view(operations={"GET": "read", "PUT": "update", "PATCH": "patch", "DELETE": "delete"})
def instance(request: HttpRequest, resource_type: str, fhir_id: str) -> HttpResponse:
    method = request.method
    if method in ("GET", "HEAD"):
        return read.read(request, resource_type, fhir_id)
    if method == "PUT":
        return update.update(request, resource_type, fhir_id)
    if method == "PATCH":
        return patch.patch(request, resource_type, fhir_id)
    if method == "DELETE":
        return delete.delete(request, resource_type, fhir_id)
    raise _method_not_allowed(request, "GET, PUT, PATCH, DELETE")


@fhir_view(operations={"GET": "search", "POST": "search"})
def compartment(
    request: HttpRequest, resource_type: str, fhir_id: str, member_type: str, post: bool = False
) -> HttpResponse:
    allowed = ("POST",) if post else ("GET", "HEAD")
    if request.method in allowed:
        return search.compartment_search(request, resource_type, fhir_id, member_type)
    raise _method_not_allowed(request, allowed[0])


@fhir_view(operations={"GET": "everything"})
def type_everything(request: HttpRequest, resource_type: str) -> HttpResponse:
    return _everything(request, resource_type, None)


@fhir_view(operations={"GET": "everything"})
def instance_everything(request: HttpRequest, resource_type: str, fhir_id: str) -> HttpResponse:
    return _everything(request, resource_type, fhir_id)


def _everything(request: HttpRequest, resource_type: str, fhir_id: str | None) -> HttpResponse:
    if resource_type != "Patient":
        raise error(404, "not-found", f"No operation $everything on {resource_type} (only on Patient)")
    if request.method in ("GET", "HEAD"):
        return everything.everything(request, fhir_id)
    raise _method_not_allowed(request, "GET")


@fhir_view(operations={"POST": "materialize"})
def instance_materialize(request: HttpRequest, resource_type: str, fhir_id: str) -> HttpResponse:
    if resource_type != "CarePlan":
        raise error(404, "not-found", f"No operation $materialize on {resource_type} (only on CarePlan)")
    return materialize.materialize(request, fhir_id)


@fhir_view(operations={"GET": "read"})
def instance_status(request: HttpRequest, resource_type: str, fhir_id: str) -> HttpResponse:
    if resource_type != "Subscription":
        raise error(404, "not-found", f"No operation $status on {resource_type} (only on Subscription)")
    if request.method in ("GET", "HEAD"):
        return subscription_status.status(request, fhir_id)
    raise _method_not_allowed(request, "GET")


@fhir_view(operations={"GET": "history"})
def instance_history(request: HttpRequest, resource_type: str, fhir_id: str) -> HttpResponse:
    if request.method in ("GET", "HEAD"):
        return history.history(request, resource_type, fhir_id)
    raise _method_not_allowed(request, "GET")


@fhir_view(operations={"GET": "vread"})
def version(request: HttpRequest, resource_type: str, fhir_id: str, version_id: str) -> HttpResponse:
    if request.method in ("GET", "HEAD"):
        return read.vread(request, resource_type, fhir_id, version_id)
    raise _method_not_allowed(request, "GET")


@fhir_view
def unknown(request: HttpRequest, rest: str = "") -> HttpResponse:
    raise error(404, "not-found", f"No FHIR interaction at {request.path}")
