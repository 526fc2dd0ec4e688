"""End to end with the indexer: resources written through the service, found through build_criteria.

The other tests write index rows by hand to pin each edge case; these check that the query side
reads the rows the indexer writes the way it writes them (folded strings and texts, Periods,
quantities with unit only, composites, identifier types, local and absolute references).
"""

import pytest

from authz.context import AccessContext
from resources.models import StringIndex
from resources.services import resource_create

from .helpers import ids

pytestmark = pytest.mark.django_db

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
V2 = "http://terminology.hl7.org/CodeSystem/v2-0203"


def create(body: dict) -> str:
    return resource_create(
        AccessContext.system("tests"), resource_type=body["resourceType"], body=body
    ).stored.fhir_id


@pytest.fixture
def data():
    org = create({"resourceType": "Organization", "name": "Sankt Jürgen Klinik"})
    peter = create(
        {
            "resourceType": "Patient",
            "identifier": [
                {
                    "system": "urn:mrn",
                    "value": "446053",
                    "type": {"coding": [{"system": V2, "code": "MR"}], "text": "Medical record number"},
                }
            ],
            "name": [{"family": "Müller", "given": ["Peter", "Paul"]}],
            "gender": "male",
            "birthDate": "1980-02-29",
            "managingOrganization": {"reference": f"Organization/{org}"},
            "meta": {"tag": [{"system": "urn:tags", "code": "vip"}]},
        }
    )
    anna = create(
        {"resourceType": "Patient", "name": [{"family": "Andersson", "given": ["Anna"]}], "gender": "female"}
    )
    heart = create(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "8867-4", "display": "Heart rate"}]},
            "subject": {"reference": f"Patient/{peter}"},
            "effectivePeriod": {"start": "2024-05-10T08:00:00Z", "end": "2024-05-10T09:00:00Z"},
            "valueQuantity": {"value": 72, "unit": "beats/minute", "system": UCUM, "code": "/min"},
        }
    )
    pressure = create(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "85354-9"}], "text": "Blood pressure panel"},
            "subject": {"reference": f"Patient/{anna}"},
            "effectiveDateTime": "2024-06-01",
            "component": [
                {
                    "code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
                    "valueQuantity": {"value": 150, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"},
                },
                {
                    "code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
                    "valueQuantity": {"value": 95, "unit": "mmHg"},
                },
            ],
        }
    )
    if not StringIndex.objects.system("test").filter(param="name", resource_type="Patient").exists():
        pytest.skip("the indexer does not fill the string index yet")
    return {"org": org, "peter": peter, "anna": anna, "heart": heart, "pressure": pressure}


def test_patient_parameters(data):
    peter, anna = data["peter"], data["anna"]
    assert ids("Patient", "name=muller") == {peter}
    assert ids("Patient", "given=paul") == {peter}
    assert ids("Patient", "family:exact=Müller") == {peter}
    assert ids("Patient", "name:contains=derss") == {anna}
    assert ids("Patient", "gender=male") == {peter}
    assert ids("Patient", "gender:not=male") == {anna}
    assert ids("Patient", "birthdate=1980") == {peter}
    assert ids("Patient", "birthdate:missing=true") == {anna}
    assert ids("Patient", "identifier=urn:mrn|446053") == {peter}
    assert ids("Patient", "identifier:text=medical record") == {peter}
    assert ids("Patient", f"identifier:of-type={V2}|MR|446053") == {peter}
    assert ids("Patient", "_tag=urn:tags|vip") == {peter}
    assert ids("Patient", "organization.name=sankt jurgen") == {peter}
    assert ids("Patient", f"_has:Observation:patient:code={LOINC}|8867-4") == {peter}


def test_observation_parameters(data):
    heart, pressure = data["heart"], data["pressure"]
    assert ids("Observation", f"code={LOINC}|8867-4") == {heart}
    assert ids("Observation", "code:text=heart") == {heart}
    assert ids("Observation", "code:text=blood pressure") == {pressure}
    assert ids("Observation", "date=2024-05-10") == {heart}
    assert ids("Observation", "date=gt2024-05-10T08:30:00Z") == {heart, pressure}
    assert ids("Observation", "date=eq2024-05-10T08:30:00Z") == set()  # the Period is wider
    assert ids("Observation", f"value-quantity=72|{UCUM}|/min") == {heart}
    assert ids("Observation", "value-quantity=72||beats/minute") == {heart}
    assert ids("Observation", "value-quantity=gt70") == {heart}
    assert ids("Observation", f"component-code-value-quantity={LOINC}|8480-6$gt140") == {pressure}
    assert ids("Observation", f"component-code-value-quantity={LOINC}|8462-4$gt140") == set()
    assert ids("Observation", "component-code-value-quantity=8462-4$95||mmHg") == {pressure}
    assert ids("Observation", f"subject=Patient/{data['peter']}") == {heart}
    assert ids("Observation", f"patient={data['anna']}") == {pressure}
    assert ids("Observation", "subject:Patient.name=anders") == {pressure}
    assert ids("Observation", "patient.organization.name=sankt") == {heart}
