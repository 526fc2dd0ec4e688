"""The in-memory prefilter may only ever say "no" when the search engine says no: over a spread of
Observations and criteria, every "no" is checked against the engine."""

from __future__ import annotations

import itertools

import pytest

from authz.context import AccessContext
from resources import fhirjson
from resources.models import Resource
from resources.search.conditional import criteria_filter, parse_criteria
from resources.services import resource_create, resource_update
from subscriptions import prefilter

SYSTEM = AccessContext.system("prefilter tests")

CRITERIA = [
    "Observation?patient=Patient/p1",
    "Observation?patient=p2",
    "Observation?subject=Patient/p1,Patient/p2",
    "Observation?subject=Group/g1",
    "Observation?code=http://loinc.org|8867-4",
    "Observation?code=8867-4",
    "Observation?code=HTTP://LOINC.ORG|8867-4",
    "Observation?code=|8867-4",
    "Observation?code=http://loinc.org|",
    "Observation?code=http://snomed.info/sct|1,http://loinc.org|29463-7",
    "Observation?code:text=heart",
    "Observation?patient.name=x",
    "Observation?_id=o-1",
    "Observation?status=final&patient=Patient/p2",
    "Observation?performer=Practitioner/d1",
    "Observation?subject=http://example.org/fhir/Patient/p1",
]


@pytest.mark.django_db
def test_no_means_the_engine_says_no_too():
    for pid in ("p1", "p2"):
        resource_update(
            SYSTEM, resource_type="Patient", fhir_id=pid, body={"resourceType": "Patient", "id": pid}
        )
    bodies = []
    for n, (subject, code, status) in enumerate(
        itertools.product(
            ["Patient/p1", "Patient/p2", "http://example.org/fhir/Patient/p1", None],
            [("http://loinc.org", "8867-4"), ("http://loinc.org", "29463-7"), (None, "8867-4")],
            ["final", "preliminary"],
        )
    ):
        coding = {"code": code[1]} if code[0] is None else {"system": code[0], "code": code[1]}
        body = {
            "resourceType": "Observation",
            "status": status,
            "code": {"coding": [coding], "text": "heart rate"},
        }
        if subject:
            body["subject"] = {"reference": subject}
        if n % 3 == 0:
            body["performer"] = [{"reference": "Practitioner/d1"}]
        bodies.append(resource_create(SYSTEM, resource_type="Observation", body=body).stored)
    said_no = 0
    for stored in bodies:
        rows = prefilter.rows_of("Observation", fhirjson.loads(stored.body))
        for criteria in CRITERIA:
            if prefilter.may_match(criteria, stored.fhir_id, rows):
                continue
            said_no += 1
            _, _, query = criteria.partition("?")
            condition = criteria_filter(SYSTEM, "Observation", parse_criteria(query))
            engine = (
                Resource.objects.system("prefilter tests").filter(pk=stored.pk).filter(condition).exists()
            )
            assert not engine, f"{criteria} matches {stored.body} but the prefilter said no"
    assert said_no > 100  # it does say no, often
