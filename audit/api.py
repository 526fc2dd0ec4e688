"""Placeholder: the AuditEvent endpoints are being written."""

from resources.api.http import fhir_view
from resources.outcomes import error


@fhir_view
def search(request):
    raise error(501, "not-supported", "AuditEvent search is not available yet")


@fhir_view
def read(request, fhir_id):
    raise error(501, "not-supported", "AuditEvent read is not available yet")
