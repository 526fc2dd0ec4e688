"""batch Bundles (http.html#transaction): entries succeed or fail on their own."""

import pytest

from resources.models import Resource

from .factories import PatientFactory

pytestmark = pytest.mark.django_db


def test_batch_entries_fail_independently(fhir):
    existing = fhir.create(PatientFactory())
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": PatientFactory(), "request": {"method": "POST", "url": "Patient"}},
            {
                "resource": {"resourceType": "Patient", "gender": "robot"},
                "request": {"method": "POST", "url": "Patient"},
            },
            {"request": {"method": "GET", "url": f"Patient/{existing['id']}"}},
            {"request": {"method": "GET", "url": "Patient/missing"}},
            {"request": {"method": "NOPE", "url": "Patient"}},
        ],
    }
    response = fhir.post("", bundle)
    assert response.status_code == 200
    assert response.json_body["type"] == "batch-response"
    statuses = [e["response"]["status"] for e in response.json_body["entry"]]
    assert statuses == ["201 Created", "400 Bad Request", "200 OK", "404 Not Found", "400 Bad Request"]
    failed = response.json_body["entry"][1]["response"]["outcome"]
    assert failed["resourceType"] == "OperationOutcome"
    assert Resource.objects.system("test").filter(resource_type="Patient").count() == 2
