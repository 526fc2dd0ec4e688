"""What the request path records: one row per request, with the write or instead of it, and no
answer at all when the row cannot be written (fail closed)."""

from __future__ import annotations

import pytest

from audit import services
from audit.models import AuditEntry, AuditPatient
from conftest import Fhir
from resources.models import Resource

pytestmark = pytest.mark.django_db


def test_a_write_and_its_row_share_the_transaction(fhir: Fhir):
    created = fhir.create({"resourceType": "Patient", "id": "ignored"})
    row = AuditEntry.objects.order_by("-id").first()
    assert (row.operation, row.outcome, row.status) == ("create", "success", 201)
    assert row.results == f"Patient/{created['id']}@1" and row.rule == "admin-all"
    assert list(AuditPatient.objects.filter(entry=row).values_list("patient_id", flat=True)) == [
        created["id"]
    ]


def test_a_refused_write_leaves_a_failure_row_and_nothing_else(fhir: Fhir):
    before = Resource.objects.system("test").count()
    response = fhir.post("Patient", {"resourceType": "Patient", "gender": "robot"})
    assert response.status_code == 400
    row = AuditEntry.objects.order_by("-id").first()
    assert (row.outcome, row.status, row.results) == ("failure", 400, "")
    assert "robot" in row.reason
    assert Resource.objects.system("test").count() == before


def test_request_id_is_echoed_and_recorded(fhir: Fhir):
    response = fhir.get("Patient", headers={"X-Request-Id": "trace-42"})
    assert response["X-Request-Id"] == "trace-42"
    assert AuditEntry.objects.order_by("-id").first().request_id == "trace-42"


def test_a_read_is_not_served_when_its_row_cannot_be_written(fhir: Fhir, monkeypatch):
    patient = fhir.create({"resourceType": "Patient"})

    def broken(*args, **kwargs):
        raise RuntimeError("audit storage down")

    monkeypatch.setattr(services, "_insert", broken)
    response = fhir.get(f"Patient/{patient['id']}")
    assert response.status_code == 500
    assert patient["id"] not in response.content.decode()


def test_a_write_is_rolled_back_when_its_row_cannot_be_written(fhir: Fhir, monkeypatch):
    before = Resource.objects.system("test").count()
    monkeypatch.setattr(services, "_insert", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("down")))
    response = fhir.post("Patient", {"resourceType": "Patient"})
    assert response.status_code == 500
    assert Resource.objects.system("test").count() == before


def test_no_secret_in_the_row(fhir: Fhir, client):
    token = fhir.client.defaults["HTTP_AUTHORIZATION"].split()[1]
    fhir.get("Patient?name=x")
    client.get("/fhir/Patient", headers={"Authorization": "Bearer fpt_forged-token-value"})
    for row in AuditEntry.objects.all():
        text = " ".join(str(getattr(row, f.name)) for f in AuditEntry._meta.fields)
        assert token not in text and "forged-token-value" not in text
