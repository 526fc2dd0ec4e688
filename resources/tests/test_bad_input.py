"""Bad input gets a clear OperationOutcome and nothing is stored (http.html#ops, #update)."""

import pytest
from django.test import override_settings

from resources.models import Resource, ResourceVersion

from .factories import PatientFactory

pytestmark = pytest.mark.django_db


def assert_outcome(response, status, code=None):
    assert response.status_code == status, response.content
    assert response.json_body["resourceType"] == "OperationOutcome"
    if code:
        assert response.json_body["issue"][0]["code"] == code
    assert not Resource.objects.system("test").exists() or status in (409, 412)


@pytest.mark.parametrize(
    "raw", [b"{", b"not json", b'{"resourceType": "Patient",}', b"[1,2]", b"NaN", b"\xff\xfe"]
)
def test_malformed_json_is_400(fhir, raw):
    assert_outcome(fhir.post("Patient", raw), 400)


def test_empty_body_is_400(fhir):
    assert_outcome(fhir.post("Patient", b""), 400)


def test_unknown_type_is_404(fhir):
    assert_outcome(fhir.post("Spaceship", {"resourceType": "Spaceship"}), 404)


def test_body_type_differs_from_url_is_400(fhir):
    assert_outcome(fhir.post("Observation", PatientFactory()), 400)


def test_structural_failure_names_the_element(fhir):
    body = PatientFactory(name=[{"family": "Doe", "given": "Jane"}])
    response = fhir.post("Patient", body)
    assert_outcome(response, 400)
    assert any(
        "Patient.name[0].given" in e for i in response.json_body["issue"] for e in i.get("expression", [])
    )


def test_unknown_element_is_refused(fhir):
    response = fhir.post("Patient", PatientFactory(favouriteColour="blue"))
    assert_outcome(response, 400, "structure")
    assert response.json_body["issue"][0]["expression"] == ["Patient.favouriteColour"]


def test_required_binding_is_enforced(fhir):
    response = fhir.post("Patient", PatientFactory(gender="robot"))
    assert_outcome(response, 400, "code-invalid")
    assert response.json_body["issue"][0]["expression"] == ["Patient.gender"]


def test_stale_version_is_412_and_stores_nothing_new(fhir):
    created = fhir.create(PatientFactory())
    response = fhir.put(f"Patient/{created['id']}", created, headers={"If-Match": 'W/"5"'})
    assert_outcome(response, 412)
    assert ResourceVersion.objects.system("test").count() == 1


def test_deleted_is_410(fhir):
    created = fhir.create(PatientFactory())
    fhir.delete(f"Patient/{created['id']}")
    response = fhir.get(f"Patient/{created['id']}")
    assert response.status_code == 410
    assert response.json_body["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("content_type", ["application/fhir+xml", "application/xml", "text/plain"])
def test_unsupported_media_type_is_415(fhir, content_type):
    assert_outcome(fhir.post("Patient", "<Patient/>", content_type=content_type), 415)


@override_settings(FHIR_MAX_BODY_BYTES=200)
def test_too_large_body_is_413(fhir):
    body = PatientFactory(name=[{"family": "x" * 500}])
    assert_outcome(fhir.post("Patient", body), 413)


def test_method_not_allowed_is_405(fhir):
    response = fhir.client.delete("/fhir/metadata")
    assert response.status_code == 405
    assert b"OperationOutcome" in response.content


def test_unknown_path_is_404_outcome(fhir):
    response = fhir.get("Patient/1/2/3/4/5")
    assert response.status_code == 404
    assert response.json_body["resourceType"] == "OperationOutcome"


def test_unexpected_error_is_500_outcome_without_traceback(fhir, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr("resources.selectors.resource_read", boom)
    response = fhir.get("Patient/x")
    assert response.status_code == 500
    assert response.json_body["resourceType"] == "OperationOutcome"
    assert b"secret internals" not in response.content
    assert b"Traceback" not in response.content


@pytest.mark.parametrize(
    "url",
    [
        "Patient/a%00b",
        "Patient/a%00b/_history/1",
        "Patient/a%00b/_history",
        "Patient/a%00b/Observation",
        "Patient/a%00b/$everything",
        "Patient?address-city=%00",
        "Patient?_sort=%00",
        "Patient?name%00=x",
    ],
)
def test_nul_characters_are_refused_not_500(fhir, url):
    response = fhir.get(url)
    assert response.status_code in (400, 404)
    assert response.json_body["resourceType"] == "OperationOutcome"


def test_nul_in_body_is_400(fhir):
    response = fhir.post("Patient", b'{"resourceType":"Patient","name":[{"family":"a\\u0000b"}]}')
    assert_outcome(response, 400)
    response = fhir.put("Patient/a%00b", PatientFactory(id="x"))
    assert response.status_code == 400


def test_a_number_too_long_to_read_is_a_plain_400(fhir):
    body = (
        '{"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "valueInteger": '
        + "9" * 5000
        + "}"
    )
    response = fhir.post("Observation", body)
    assert response.status_code == 400
    assert response.json_body["issue"][0]["diagnostics"] == "Malformed JSON: a value cannot be read as JSON"
