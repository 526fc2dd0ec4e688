"""patch with JSON Patch (http.html#patch)."""

import pytest

from resources.models import ResourceVersion

from .factories import PatientFactory

pytestmark = pytest.mark.django_db


def test_patch_replace_and_add(fhir):
    created = fhir.create(PatientFactory())
    ops = [
        {"op": "replace", "path": "/gender", "value": "male"},
        {"op": "add", "path": "/name/0/given/-", "value": "Ann"},
        {"op": "test", "path": "/birthDate", "value": "1980-02-29"},
    ]
    response = fhir.patch(f"Patient/{created['id']}", ops)
    assert response.status_code == 200, response.json_body
    assert response.json_body["gender"] == "male"
    assert response.json_body["name"][0]["given"] == ["Jane", "Ann"]
    assert response.json_body["meta"]["versionId"] == "2"
    assert ResourceVersion.objects.system("test").get(fhir_id=created["id"], version=2).method == "PATCH"


def test_patch_failed_test_is_422_and_changes_nothing(fhir):
    created = fhir.create(PatientFactory())
    ops = [
        {"op": "replace", "path": "/gender", "value": "male"},
        {"op": "test", "path": "/gender", "value": "x"},
    ]
    assert fhir.patch(f"Patient/{created['id']}", ops).status_code == 422
    assert fhir.get(f"Patient/{created['id']}").json_body["gender"] == "female"


def test_patch_result_must_be_valid(fhir):
    created = fhir.create(PatientFactory())
    response = fhir.patch(f"Patient/{created['id']}", [{"op": "add", "path": "/colour", "value": "blue"}])
    assert response.status_code == 400
    assert fhir.get(f"Patient/{created['id']}").json_body["meta"]["versionId"] == "1"


def test_patch_cannot_change_id(fhir):
    created = fhir.create(PatientFactory())
    assert (
        fhir.patch(f"Patient/{created['id']}", [{"op": "replace", "path": "/id", "value": "x"}]).status_code
        == 400
    )


@pytest.mark.parametrize(
    "ops",
    [
        {"op": "add"},
        [{"op": "frobnicate", "path": "/gender"}],
        [{"op": "remove", "path": "/nothing"}],
        [{"op": "replace", "path": "gender", "value": "male"}],
        [{"op": "add", "path": "/name/7/given", "value": ["x"]}],
    ],
)
def test_malformed_patches_are_400(fhir, ops):
    created = fhir.create(PatientFactory())
    assert fhir.patch(f"Patient/{created['id']}", ops).status_code == 400


def test_patch_needs_json_patch_content_type(fhir):
    created = fhir.create(PatientFactory())
    assert fhir.patch(f"Patient/{created['id']}", [], content_type="text/plain").status_code == 415
    assert fhir.patch(f"Patient/{created['id']}", [], content_type="application/fhir+json").status_code == 400


def test_patch_with_if_match(fhir):
    created = fhir.create(PatientFactory())
    ops = [{"op": "replace", "path": "/gender", "value": "male"}]
    assert fhir.patch(f"Patient/{created['id']}", ops, headers={"If-Match": 'W/"2"'}).status_code == 412
    assert fhir.patch(f"Patient/{created['id']}", ops, headers={"If-Match": 'W/"1"'}).status_code == 200


def test_patch_missing_and_deleted(fhir):
    ops = [{"op": "replace", "path": "/gender", "value": "male"}]
    assert fhir.patch("Patient/missing", ops).status_code == 404
    created = fhir.create(PatientFactory())
    fhir.delete(f"Patient/{created['id']}")
    assert fhir.patch(f"Patient/{created['id']}", ops).status_code == 410


def test_conditional_patch(fhir):
    created = fhir.create(PatientFactory(identifier=[{"system": "urn:s", "value": "p"}]))
    ops = [{"op": "replace", "path": "/gender", "value": "male"}]
    response = fhir.patch("Patient?identifier=urn:s|p", ops)
    assert response.status_code == 200
    assert response.json_body["id"] == created["id"]
    assert fhir.patch("Patient?identifier=urn:s|none", ops).status_code == 412
