"""FHIRPath Patch (fhirpatch.html) against HL7's test cases (tests/data/fhir-patch-tests.xml), and
through the REST API and transactions."""

from pathlib import Path
from xml.etree import ElementTree

import pytest

from resources.fhirpathpatch import apply_fhirpath_patch
from resources.outcomes import FhirError

from .factories import PatientFactory
from .fhirxml import resource

CASES = ElementTree.parse(
    Path(__file__).resolve().parents[2] / "tests" / "data" / "fhir-patch-tests.xml"
).getroot()


def _case(name: str):
    case = next(c for c in CASES if c.get("name") == name)
    first = lambda tag: next(iter(case.find(tag)))  # noqa: E731
    output = case.find("output")
    error = case.find("error")
    return (
        resource(first("input")),
        resource(first("diff")),
        resource(next(iter(output))) if output is not None else None,
        error.get("msg") if error is not None else None,
    )


@pytest.mark.parametrize("name", [c.get("name") for c in CASES])
def test_hl7_fhirpath_patch_case(name):
    source, diff, expected, error = _case(name)
    if error is not None:
        with pytest.raises(FhirError):
            apply_fhirpath_patch(source, diff)
        return
    assert apply_fhirpath_patch(source, diff) == expected


def _operation(kind, path, **parts):
    items = [{"name": "type", "valueCode": kind}, {"name": "path", "valueString": path}]
    for name, value in parts.items():
        items.append({"name": name, **value})
    return {"name": "operation", "part": items}


@pytest.mark.django_db
def test_patch_over_rest_with_parameters(fhir):
    created = fhir.create(PatientFactory())
    body = {
        "resourceType": "Parameters",
        "parameter": [
            _operation("replace", "Patient.gender", value={"valueCode": "male"}),
            _operation("add", "Patient", name={"valueString": "deceased"}, value={"valueBoolean": False}),
        ],
    }
    response = fhir.patch(f"Patient/{created['id']}", body, content_type="application/fhir+json")
    assert response.status_code == 200, response.json_body
    assert response.json_body["gender"] == "male"
    assert response.json_body["deceasedBoolean"] is False


@pytest.mark.django_db
@pytest.mark.parametrize(
    "operation",
    [
        _operation("replace", "Patient.name.given.substring(1)", value={"valueString": "x"}),
        _operation("explode", "Patient.gender"),
        _operation("replace", "Observation.status", value={"valueCode": "final"}),
    ],
)
def test_bad_fhirpath_patches_are_refused(fhir, operation):
    created = fhir.create(PatientFactory())
    body = {"resourceType": "Parameters", "parameter": [operation]}
    response = fhir.patch(f"Patient/{created['id']}", body, content_type="application/fhir+json")
    assert response.status_code == 400
    assert response.json_body["resourceType"] == "OperationOutcome"


@pytest.mark.django_db
def test_patch_that_selects_nothing_is_422(fhir):
    created = fhir.create(PatientFactory())
    body = {
        "resourceType": "Parameters",
        "parameter": [_operation("replace", "Patient.active", value={"valueBoolean": True})],
    }
    assert (
        fhir.patch(f"Patient/{created['id']}", body, content_type="application/fhir+json").status_code == 422
    )


@pytest.mark.django_db
def test_fhirpath_patch_in_a_transaction(fhir):
    created = fhir.create(PatientFactory())
    body = {"resourceType": "Parameters", "parameter": [_operation("delete", "Patient.birthDate")]}
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": body, "request": {"method": "PATCH", "url": f"Patient/{created['id']}"}}],
    }
    response = fhir.post("", bundle)
    assert response.status_code == 200, response.json_body
    assert "birthDate" not in response.json_body["entry"][0]["resource"]
