"""transaction Bundles (http.html#transaction): order, references, atomicity, responses."""

import base64

import pytest

from resources import fhirjson
from resources.models import Resource, ResourceVersion, TokenIndex

from .factories import ObservationFactory, PatientFactory

pytestmark = pytest.mark.django_db

PATIENT_URN = "urn:uuid:0d6d4c7c-9b2c-4a7e-8c39-1b3b6a0e0f01"


def tx(*entries, kind="transaction"):
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def post(resource, full_url=None, **request):
    entry = {"resource": resource, "request": {"method": "POST", "url": resource["resourceType"], **request}}
    if full_url:
        entry["fullUrl"] = full_url
    return entry


def test_urn_uuid_references_are_rewritten(fhir):
    obs = ObservationFactory(subject={"reference": PATIENT_URN}, hasMember=[{"reference": PATIENT_URN}])
    response = fhir.post("", tx(post(obs), post(PatientFactory(), PATIENT_URN)))
    assert response.status_code == 200, response.json_body
    bundle = response.json_body
    assert bundle["type"] == "transaction-response"
    obs_entry, patient_entry = bundle["entry"]
    assert patient_entry["response"]["status"] == "201 Created"
    patient_id = patient_entry["resource"]["id"]
    assert obs_entry["resource"]["subject"]["reference"] == f"Patient/{patient_id}"
    assert obs_entry["response"]["location"].startswith("Observation/")
    stored = fhirjson.loads(Resource.objects.system("test").get(resource_type="Observation").body)
    assert stored["subject"]["reference"] == f"Patient/{patient_id}"


def test_processing_order_delete_post_put_get(fhir):
    doomed = fhir.create(PatientFactory())
    kept = fhir.create(PatientFactory())
    bundle = tx(
        {"request": {"method": "GET", "url": f"Patient/{kept['id']}"}},
        {
            "resource": {**kept, "gender": "male"},
            "request": {"method": "PUT", "url": f"Patient/{kept['id']}"},
        },
        post(PatientFactory()),
        {"request": {"method": "DELETE", "url": f"Patient/{doomed['id']}"}},
    )
    response = fhir.post("", bundle)
    assert response.status_code == 200, response.json_body
    get_entry, put_entry, post_entry, delete_entry = response.json_body["entry"]
    assert get_entry["resource"]["gender"] == "male"  # GET runs last and sees the PUT
    assert put_entry["response"]["status"] == "200 OK"
    assert post_entry["response"]["status"] == "201 Created"
    assert delete_entry["response"]["status"] == "204 No Content"


def test_failing_entry_rolls_back_everything_and_is_named(fhir):
    bundle = tx(post(PatientFactory(), PATIENT_URN), post({"resourceType": "Patient", "gender": "robot"}))
    response = fhir.post("", bundle)
    assert response.status_code == 400
    issue = response.json_body["issue"][0]
    assert "Bundle.entry[1]" in issue["diagnostics"]
    assert not Resource.objects.system("test").exists()
    assert not ResourceVersion.objects.system("test").exists()
    assert not TokenIndex.objects.system("test").exists()


def test_failing_if_match_rolls_back(fhir):
    existing = fhir.create(PatientFactory())
    bundle = tx(
        post(PatientFactory()),
        {
            "resource": existing,
            "request": {"method": "PUT", "url": f"Patient/{existing['id']}", "ifMatch": 'W/"9"'},
        },
    )
    assert fhir.post("", bundle).status_code == 412
    assert Resource.objects.system("test").count() == 1


def test_conditional_reference_is_resolved(fhir):
    target = fhir.create(PatientFactory(identifier=[{"system": "urn:mrn", "value": "77"}]))
    obs = ObservationFactory(subject={"reference": "Patient?identifier=urn:mrn|77"})
    response = fhir.post("", tx(post(obs)))
    assert response.status_code == 200, response.json_body
    assert response.json_body["entry"][0]["resource"]["subject"]["reference"] == f"Patient/{target['id']}"


def test_conditional_reference_without_match_fails(fhir):
    obs = ObservationFactory(subject={"reference": "Patient?identifier=urn:mrn|none"})
    response = fhir.post("", tx(post(obs)))
    assert response.status_code == 412
    assert not Resource.objects.system("test").exists()


def test_conditional_create_in_transaction_reuses_match_for_references(fhir):
    existing = fhir.create(PatientFactory(identifier=[{"system": "urn:mrn", "value": "5"}]))
    obs = ObservationFactory(subject={"reference": PATIENT_URN})
    bundle = tx(post(PatientFactory(), PATIENT_URN, ifNoneExist="identifier=urn:mrn|5"), post(obs))
    response = fhir.post("", bundle)
    assert response.status_code == 200, response.json_body
    patient_entry, obs_entry = response.json_body["entry"]
    assert patient_entry["response"]["status"] == "200 OK"
    assert obs_entry["resource"]["subject"]["reference"] == f"Patient/{existing['id']}"
    assert Resource.objects.system("test").filter(resource_type="Patient").count() == 1


def test_put_with_urn_full_url_maps_to_its_id(fhir):
    obs = ObservationFactory(subject={"reference": PATIENT_URN})
    bundle = tx(
        {
            "fullUrl": PATIENT_URN,
            "resource": PatientFactory(id="p1"),
            "request": {"method": "PUT", "url": "Patient/p1"},
        },
        post(obs),
    )
    response = fhir.post("", bundle)
    assert response.status_code == 200, response.json_body
    assert response.json_body["entry"][1]["resource"]["subject"]["reference"] == "Patient/p1"


def test_conditional_put_in_transaction(fhir):
    existing = fhir.create(PatientFactory(identifier=[{"system": "urn:mrn", "value": "8"}]))
    bundle = tx(
        {
            "resource": PatientFactory(identifier=[{"system": "urn:mrn", "value": "8"}], gender="male"),
            "request": {"method": "PUT", "url": "Patient?identifier=urn:mrn|8"},
        }
    )
    response = fhir.post("", bundle)
    assert response.status_code == 200, response.json_body
    assert response.json_body["entry"][0]["resource"]["id"] == existing["id"]


def test_patch_entry_as_binary(fhir):
    existing = fhir.create(PatientFactory())
    patch = fhirjson.dumps([{"op": "replace", "path": "/gender", "value": "male"}]).encode()
    binary = {
        "resourceType": "Binary",
        "contentType": "application/json-patch+json",
        "data": base64.b64encode(patch).decode(),
    }
    bundle = tx({"resource": binary, "request": {"method": "PATCH", "url": f"Patient/{existing['id']}"}})
    response = fhir.post("", bundle)
    assert response.status_code == 200, response.json_body
    assert response.json_body["entry"][0]["resource"]["gender"] == "male"


def test_two_writes_of_one_resource_are_refused(fhir):
    body = PatientFactory(id="same")
    bundle = tx(
        {"resource": body, "request": {"method": "PUT", "url": "Patient/same"}},
        {"request": {"method": "DELETE", "url": "Patient/same"}},
    )
    assert fhir.post("", bundle).status_code == 400


def test_prefer_minimal_omits_resources(fhir):
    response = fhir.post("", tx(post(PatientFactory())), headers={"Prefer": "return=minimal"})
    entry = response.json_body["entry"][0]
    assert "resource" not in entry
    assert entry["response"]["location"].startswith("Patient/")


@pytest.mark.parametrize(
    "bundle",
    [
        {"resourceType": "Patient"},
        {"resourceType": "Bundle", "type": "collection"},
        {"resourceType": "Bundle", "type": "transaction", "entry": {"x": 1}},
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [{"resource": {"resourceType": "Patient"}}],
        },
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [{"request": {"method": "TRACE", "url": "Patient"}}],
        },
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [{"request": {"method": "POST", "url": "Patient"}}],
        },
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"request": {"method": "PUT", "url": "Patient"}, "resource": {"resourceType": "Patient"}}
            ],
        },
    ],
)
def test_malformed_bundles_are_400(fhir, bundle):
    response = fhir.post("", bundle)
    assert response.status_code == 400
    assert response.json_body["resourceType"] == "OperationOutcome"


def test_unknown_type_in_entry_is_404(fhir):
    bundle = tx(post({"resourceType": "Spaceship"}))
    assert fhir.post("", bundle).status_code == 404


def test_get_search_entry_sees_the_writes_of_the_transaction(fhir):
    bundle = tx(
        post(PatientFactory(identifier=[{"system": "urn:tx", "value": "s1"}])),
        {"request": {"method": "GET", "url": "Patient?identifier=urn:tx|s1"}},
        {"request": {"method": "GET", "url": "Patient?birthdate=notadate"}},
    )
    response = fhir.post("", bundle)
    assert response.status_code == 200, response.json_body
    created, found, refused = response.json_body["entry"]
    assert found["response"]["status"] == "200 OK"
    assert found["resource"]["type"] == "searchset"
    assert [e["resource"]["id"] for e in found["resource"]["entry"]] == [created["resource"]["id"]]
    assert refused["response"]["status"] == "400 Bad Request"
    assert refused["response"]["outcome"]["resourceType"] == "OperationOutcome"
