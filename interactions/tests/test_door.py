"""The door: one audit row per interaction, naming the operation the interaction declares, for every
transport (REST, the command line, the console's actions); a write and its row commit together."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from audit.models import AuditEntry
from authz.context import AccessContext
from conftest import bearer
from interactions import console, read, write
from resources.outcomes import FhirError

pytestmark = pytest.mark.django_db

PATIENT = {"resourceType": "Patient", "name": [{"family": "Door"}]}


def _last() -> AuditEntry:
    return AuditEntry.objects.order_by("-id").first()


@pytest.mark.parametrize(
    ("method", "path", "body", "operation"),
    [
        ("post", "Patient", PATIENT, "create"),
        ("get", "Patient?name=Door", None, "search"),
        ("get", "_history", None, "history"),
        ("post", "Patient/p1/$api-token", None, "generate-token"),
        ("put", "Patient/p1", {**PATIENT, "id": "p1"}, "update"),
        ("delete", "Patient/p1", None, "delete"),
        ("get", "Patient/p1/_history/1", None, "vread"),
        ("post", "", {"resourceType": "Bundle", "type": "batch", "entry": []}, "transaction"),
        ("patch", "Patient/p1", [{"op": "add", "path": "/active", "value": True}], "patch"),
    ],
)
def test_one_row_per_rest_interaction_with_its_declared_operation(fhir, method, path, body, operation):
    fhir.put("Patient/p1", {**PATIENT, "id": "p1"})
    before = AuditEntry.objects.count()
    kwargs = {"content_type": "application/json-patch+json"} if method == "patch" else {}
    response = (
        fhir.get(path)
        if method in ("get",)
        else fhir.delete(path)
        if method == "delete"
        else getattr(fhir, method)(path, body if body is not None else "", **kwargs)
    )
    assert response.status_code < 500, response.content
    assert AuditEntry.objects.count() == before + 1
    assert _last().operation == operation


def test_a_refused_write_leaves_one_failure_row_and_nothing_written(fhir, client):
    client.defaults["HTTP_AUTHORIZATION"] = bearer("Nobody")
    before = AuditEntry.objects.count()
    response = client.post("/fhir/Patient", PATIENT, content_type="application/fhir+json")
    assert response.status_code == 403
    assert AuditEntry.objects.count() == before + 1
    row = _last()
    assert (row.operation, row.outcome, row.status) == ("create", "denied", 403)


def test_the_door_audits_calls_from_any_transport():
    ctx = AccessContext.system("door test")
    written = write.create(ctx, resource_type="Patient", body=PATIENT)
    assert (_last().operation, _last().status) == ("create", 201)
    read.read(AccessContext.system("door test"), resource_type="Patient", fhir_id=written.stored.fhir_id)
    assert _last().operation == "read"
    with pytest.raises(FhirError):
        read.read(AccessContext.system("door test"), resource_type="Patient", fhir_id="missing")
    assert (_last().operation, _last().status) == ("read", 404)


def test_operator_actions_are_interactions():
    out, err = io.StringIO(), io.StringIO()
    call_command("issue_token", "--role", "Admin", "--label", "door", stdout=out, stderr=err)
    assert (_last().operation, _last().http_method) == ("token-mint", "command")
    call_command("revoke_token", out.getvalue().strip(), stdout=io.StringIO())
    assert _last().operation == "token-revoke"
    with pytest.raises(FhirError) as refused:
        console.issue_token(AccessContext(role="Practitioner"), role="Admin")
    assert refused.value.status == 403
    assert (_last().operation, _last().outcome) == ("token-mint", "denied")
