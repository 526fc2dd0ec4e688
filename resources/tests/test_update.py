"""update, update-as-create, If-Match and conditional update (http.html#update, #cond-update)."""

import pytest

from resources.models import Resource, ResourceVersion

from .factories import PatientFactory

pytestmark = pytest.mark.django_db


def test_update_increments_version(fhir):
    created = fhir.create(PatientFactory())
    response = fhir.put(f"Patient/{created['id']}", {**created, "gender": "other"})
    assert response.status_code == 200
    assert response.json_body["meta"]["versionId"] == "2"
    assert response["ETag"] == 'W/"2"'


def test_update_as_create_with_client_id(fhir):
    response = fhir.put("Patient/my-id.1", PatientFactory(id="my-id.1"))
    assert response.status_code == 201
    assert response["Location"].endswith("/fhir/Patient/my-id.1/_history/1")
    assert fhir.get("Patient/my-id.1").status_code == 200


@pytest.mark.parametrize("bad_id", ["a" * 65, "has_underscore", "sp ace", "é"])
def test_update_as_create_refuses_bad_ids(fhir, bad_id):
    response = fhir.put(f"Patient/{bad_id}", PatientFactory(id=bad_id))
    assert response.status_code == 400
    assert not Resource.objects.system("test").exists()


def test_update_needs_matching_id(fhir):
    created = fhir.create(PatientFactory())
    response = fhir.put(f"Patient/{created['id']}", {**created, "id": "other"})
    assert response.status_code == 400
    assert response.json_body["issue"][0]["expression"] == ["id"]
    missing = {k: v for k, v in created.items() if k != "id"}
    assert fhir.put(f"Patient/{created['id']}", missing).status_code == 400


def test_update_body_type_must_match_url(fhir):
    response = fhir.put("Observation/x", PatientFactory(id="x"))
    assert response.status_code == 400
    assert not Resource.objects.system("test").exists()


def test_if_match_current_version_succeeds_and_stale_is_412(fhir):
    created = fhir.create(PatientFactory())
    url = f"Patient/{created['id']}"
    ok = fhir.put(url, created, headers={"If-Match": 'W/"1"'})
    assert ok.status_code == 200
    stale = fhir.put(url, created, headers={"If-Match": 'W/"1"'})
    assert stale.status_code == 412
    assert ResourceVersion.objects.system("test").filter(fhir_id=created["id"]).count() == 2


def test_if_match_garbage_is_400(fhir):
    created = fhir.create(PatientFactory())
    assert fhir.put(f"Patient/{created['id']}", created, headers={"If-Match": "banana"}).status_code == 400


def test_update_of_deleted_resource_revives_it(fhir):
    created = fhir.create(PatientFactory())
    fhir.delete(f"Patient/{created['id']}")
    response = fhir.put(f"Patient/{created['id']}", created)
    assert response.status_code == 201
    assert response.json_body["meta"]["versionId"] == "3"


def test_client_meta_tags_are_kept_and_server_fields_set(fhir):
    body = PatientFactory(meta={"versionId": "99", "tag": [{"system": "urn:t", "code": "x"}]})
    created = fhir.create(body)
    assert created["meta"]["versionId"] == "1"
    assert created["meta"]["tag"] == [{"system": "urn:t", "code": "x"}]


def test_conditional_update_updates_the_single_match(fhir):
    created = fhir.create(PatientFactory(identifier=[{"system": "urn:s", "value": "a"}]))
    body = PatientFactory(identifier=[{"system": "urn:s", "value": "a"}], gender="male")
    response = fhir.put("Patient?identifier=urn:s|a", body)
    assert response.status_code == 200
    assert response.json_body["id"] == created["id"]
    assert response.json_body["gender"] == "male"


def test_conditional_update_creates_when_nothing_matches(fhir):
    response = fhir.put("Patient?identifier=urn:s|new", PatientFactory())
    assert response.status_code == 201


def test_conditional_update_with_several_matches_is_412(fhir):
    for _ in range(2):
        fhir.create(PatientFactory(identifier=[{"system": "urn:s", "value": "b"}]))
    assert fhir.put("Patient?identifier=urn:s|b", PatientFactory()).status_code == 412


def test_conditional_update_body_id_must_be_the_match(fhir):
    fhir.create(PatientFactory(identifier=[{"system": "urn:s", "value": "c"}]))
    assert fhir.put("Patient?identifier=urn:s|c", PatientFactory(id="elsewhere")).status_code == 400
