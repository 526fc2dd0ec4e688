"""capabilities (http.html#capabilities)."""

import pytest

from resources import definitions

pytestmark = pytest.mark.django_db


def test_capability_statement_lists_every_type(fhir):
    response = fhir.get("metadata")
    assert response.status_code == 200
    statement = response.json_body
    assert statement["resourceType"] == "CapabilityStatement"
    assert statement["fhirVersion"] == "4.0.1"
    resources = {r["type"]: r for r in statement["rest"][0]["resource"]}
    assert set(resources) == set(definitions.resource_types())
    assert len(resources) == 146  # R4 has 146 concrete resource types
    patient = resources["Patient"]
    assert {i["code"] for i in patient["interaction"]} >= {"read", "vread", "update", "delete", "create"}
    assert {p["name"] for p in patient["searchParam"]} >= {"_id", "identifier"}
    assert {i["code"] for i in statement["rest"][0]["interaction"]} >= {"transaction", "batch"}


def test_capability_statement_is_valid_r4(fhir):
    from resources import fhirjson
    from resources.validation import validate_resource

    statement = fhirjson.loads(fhir.get("metadata").content)
    assert validate_resource(statement) == []
