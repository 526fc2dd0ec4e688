"""delete and conditional delete (http.html#delete, #cdelete)."""

import pytest

from resources.models import Resource, TokenIndex

from .factories import PatientFactory

pytestmark = pytest.mark.django_db


def test_delete_then_read_is_410_and_history_keeps_it(fhir):
    created = fhir.create(PatientFactory())
    url = f"Patient/{created['id']}"
    response = fhir.delete(url)
    assert response.status_code == 200
    assert response["ETag"] == 'W/"2"'
    gone = fhir.get(url)
    assert gone.status_code == 410
    assert gone.json_body["issue"][0]["code"] == "deleted"
    history = fhir.get(f"{url}/_history").json_body
    assert [e["request"]["method"] for e in history["entry"]] == ["DELETE", "POST"]
    assert "resource" not in history["entry"][0]
    assert fhir.get(f"{url}/_history/1").status_code == 200
    assert fhir.get(f"{url}/_history/2").status_code == 410


def test_delete_clears_index_rows(fhir):
    created = fhir.create(PatientFactory())
    fhir.delete(f"Patient/{created['id']}")
    assert not TokenIndex.objects.system("test").exists()
    assert fhir.get("Patient?identifier=" + created["identifier"][0]["value"]).json_body["total"] == 0


def test_delete_is_idempotent(fhir):
    created = fhir.create(PatientFactory())
    fhir.delete(f"Patient/{created['id']}")
    assert fhir.delete(f"Patient/{created['id']}").status_code == 200
    assert Resource.objects.system("test").get(fhir_id=created["id"]).version == 2
    assert fhir.delete("Patient/never-existed").status_code == 200


def test_conditional_delete(fhir):
    created = fhir.create(PatientFactory(identifier=[{"system": "urn:s", "value": "d"}]))
    assert fhir.delete("Patient?identifier=urn:s|d").status_code == 200
    assert fhir.get(f"Patient/{created['id']}").status_code == 410


def test_conditional_delete_several_matches_is_412(fhir):
    for _ in range(2):
        fhir.create(PatientFactory(identifier=[{"system": "urn:s", "value": "e"}]))
    assert fhir.delete("Patient?identifier=urn:s|e").status_code == 412
    assert Resource.objects.system("test").filter(deleted=False).count() == 2


def test_conditional_delete_refuses_unknown_criteria(fhir):
    fhir.create(PatientFactory())
    response = fhir.delete("Patient?colour=blue")
    assert response.status_code == 400
    assert Resource.objects.system("test").filter(deleted=False).count() == 1
