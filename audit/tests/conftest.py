"""The small world both audit test modules make requests against."""

from __future__ import annotations

import pytest

from conftest import Fhir


@pytest.fixture
def seeded(fhir: Fhir) -> Fhir:
    """Two patients, a practitioner and one Observation of p1, written by the operator."""
    for pid in ("p1", "p2"):
        assert fhir.put(f"Patient/{pid}", {"resourceType": "Patient", "id": pid}).status_code == 201
    fhir.put("Practitioner/dr", {"resourceType": "Practitioner", "id": "dr"})
    fhir.put(
        "Observation/o1",
        {
            "resourceType": "Observation",
            "id": "o1",
            "status": "final",
            "code": {"text": "pulse"},
            "subject": {"reference": "Patient/p1"},
        },
    )
    return fhir
