"""End to end: a third-party FHIR client (fhirpy) against a gunicorn server process."""

import pytest
import requests
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import OperationOutcome, ResourceNotFound

pytestmark = pytest.mark.live


@pytest.fixture
def client(live_server_url, live_admin_headers):
    return SyncFHIRClient(live_server_url, authorization=live_admin_headers["Authorization"])


def test_crud_with_fhirpy(client):
    patient = client.resource(
        "Patient",
        identifier=[{"system": "http://example.org/mrn", "value": "live-1"}],
        name=[{"family": "Lindqvist", "given": ["Åsa"]}],
        gender="female",
        birthDate="1961-07-04",
    )
    patient.save()
    assert patient.id
    assert patient["meta"]["versionId"] == "1"

    found = client.resources("Patient").search(identifier="http://example.org/mrn|live-1").fetch()
    assert [p.id for p in found] == [patient.id]

    patient["gender"] = "other"
    patient.save()
    fetched = client.reference("Patient", patient.id).to_resource()
    assert fetched["gender"] == "other"
    assert fetched["meta"]["versionId"] == "2"

    observation = client.resource(
        "Observation",
        status="final",
        code={"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        subject=patient.to_reference(),
        valueQuantity={"value": 61.50, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
    )
    observation.save()
    assert client.reference("Observation", observation.id).to_resource()["subject"]["reference"] == (
        f"Patient/{patient.id}"
    )

    observation.delete()
    with pytest.raises(ResourceNotFound):
        client.reference("Observation", observation.id).to_resource()


def test_invalid_resource_is_refused_with_outcome(client):
    with pytest.raises(OperationOutcome) as raised:
        client.resource("Patient", gender="robot").save()
    assert "robot" in str(raised.value)


def test_transaction_over_http(live_server_url, live_admin_headers):
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:6b1c7b7e-3c1e-4d63-9c45-52f2c8b0a001",
                "resource": {"resourceType": "Patient", "name": [{"family": "Okafor"}]},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "weight"},
                    "subject": {"reference": "urn:uuid:6b1c7b7e-3c1e-4d63-9c45-52f2c8b0a001"},
                },
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    response = requests.post(
        live_server_url, json=bundle, headers={"Content-Type": "application/fhir+json", **live_admin_headers}
    )
    assert response.status_code == 200
    patient_entry, observation_entry = response.json()["entry"]
    assert (
        observation_entry["resource"]["subject"]["reference"] == f"Patient/{patient_entry['resource']['id']}"
    )


def test_history_and_metadata_over_http(live_server_url, live_admin_headers):
    metadata = requests.get(f"{live_server_url}/metadata").json()
    assert metadata["fhirVersion"] == "4.0.1"
    history = requests.get(f"{live_server_url}/_history?_count=1", headers=live_admin_headers).json()
    assert history["type"] == "history"
    xml = requests.get(f"{live_server_url}/metadata", headers={"Accept": "application/fhir+xml"})
    assert xml.status_code == 406


def test_search_features_with_fhirpy(client):
    organization = client.resource("Organization", name="Clinique Saint-Éloi", active=True)
    organization.save()
    for index in range(5):
        client.resource(
            "Patient",
            name=[{"family": "Émond", "given": [f"Zoé{index}"]}],
            birthDate=f"199{index}-06-01",
            managingOrganization=organization.to_reference(),
        ).save()
    search = client.resources("Patient").search(family="emond").limit(2)
    everyone = search.fetch_all()  # follows the next links
    assert len(everyone) == 5
    born_late = client.resources("Patient").search(family="emond", birthdate__ge="1993-01-01").fetch_all()
    assert len(born_late) == 2
    chained = client.resources("Patient").search(**{"organization.name": "clinique"}).fetch_all()
    assert len(chained) == 5
    bundle = client.resources("Patient").search(family="emond").include("Patient", "organization").fetch_raw()
    modes = [entry["search"]["mode"] for entry in bundle["entry"]]
    assert modes.count("include") == 1 and modes.count("match") == 5
    assert client.resources("Patient").search(family="emond").count() == 5
