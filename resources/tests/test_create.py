"""create and conditional create (http.html#create, #ccreate)."""

import pytest

from resources.models import Resource, ResourceVersion, TokenIndex

from .factories import PatientFactory

pytestmark = pytest.mark.django_db


def test_create_assigns_id_version_and_headers(fhir):
    response = fhir.post("Patient", PatientFactory(id="client-chosen"))
    assert response.status_code == 201
    body = response.json_body
    assert body["id"] != "client-chosen"  # R4: the server ignores an id given to create
    assert body["meta"]["versionId"] == "1"
    assert body["meta"]["lastUpdated"].endswith("Z")
    assert response["ETag"] == 'W/"1"'
    assert response["Location"].endswith(f"/fhir/Patient/{body['id']}/_history/1")
    assert response["Last-Modified"]
    assert response["Content-Type"].startswith("application/fhir+json")


def test_server_ids_are_random_and_url_safe(fhir):
    ids = {fhir.create(PatientFactory())["id"] for _ in range(5)}
    assert len(ids) == 5
    for fhir_id in ids:
        assert len(fhir_id) >= 32
        assert all(c.isalnum() or c == "-" for c in fhir_id)


def test_decimal_precision_is_kept(fhir):
    body = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "weight"},
        "valueQuantity": {"value": 70.50, "unit": "kg"},
    }
    raw = (
        b'{"resourceType":"Observation","status":"final","code":{"text":"w"},"valueQuantity":{"value":70.50}}'
    )
    response = fhir.post("Observation", raw)
    assert response.status_code == 201
    assert b'"value":70.50' in response.content
    assert fhir.post("Observation", body).status_code == 201


@pytest.mark.parametrize(
    "prefer,expect_body", [("return=minimal", None), ("return=representation", "Patient")]
)
def test_prefer_return(fhir, prefer, expect_body):
    response = fhir.post("Patient", PatientFactory(), headers={"Prefer": prefer})
    assert response.status_code == 201
    if expect_body is None:
        assert response.content == b""
    else:
        assert response.json_body["resourceType"] == expect_body


def test_prefer_operation_outcome(fhir):
    response = fhir.post("Patient", PatientFactory(), headers={"Prefer": "return=OperationOutcome"})
    assert response.status_code == 201
    assert response.json_body["resourceType"] == "OperationOutcome"


def test_conditional_create_returns_existing_match(fhir):
    first = fhir.create(PatientFactory(identifier=[{"system": "urn:s", "value": "42"}]))
    again = fhir.post("Patient", PatientFactory(), headers={"If-None-Exist": "identifier=urn:s|42"})
    assert again.status_code == 200
    assert again.json_body["id"] == first["id"]
    assert Resource.objects.system("test").filter(resource_type="Patient").count() == 1


def test_conditional_create_creates_when_no_match(fhir):
    response = fhir.post("Patient", PatientFactory(), headers={"If-None-Exist": "identifier=urn:s|nope"})
    assert response.status_code == 201


def test_conditional_create_with_several_matches_is_412(fhir):
    fhir.create(PatientFactory(identifier=[{"system": "urn:s", "value": "dup"}]))
    fhir.create(PatientFactory(identifier=[{"system": "urn:s", "value": "dup"}]))
    response = fhir.post("Patient", PatientFactory(), headers={"If-None-Exist": "identifier=urn:s|dup"})
    assert response.status_code == 412
    assert response.json_body["resourceType"] == "OperationOutcome"


def test_conditional_create_refuses_criteria_it_cannot_evaluate(fhir):
    response = fhir.post("Patient", PatientFactory(), headers={"If-None-Exist": "colour=blue"})
    assert response.status_code == 400
    assert "colour" in response.json_body["issue"][0]["diagnostics"]
    assert not Resource.objects.system("test").exists()


def test_create_writes_row_version_and_index_together(fhir):
    created = fhir.create(PatientFactory(identifier=[{"system": "urn:s", "value": "7"}]))
    row = Resource.objects.system("test").get(fhir_id=created["id"])
    assert ResourceVersion.objects.system("test").filter(resource=row, version=1, method="POST").exists()
    assert (
        TokenIndex.objects.system("test")
        .filter(resource=row, param="identifier", system="urn:s", code="7")
        .exists()
    )
