"""`_include` / `_revinclude` (https://hl7.org/fhir/R4/search.html#include): forms, `:iterate`, `*`,
deleted and missing targets, no duplicates, one SQL statement per level."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from resources.outcomes import FhirError

from .results_support import create, delete, ids, included, observation, patient, run

pytestmark = pytest.mark.django_db


@pytest.fixture
def record():
    org = create("Organization", name="Clinic")
    gp = create("Practitioner", name=[{"family": "Who"}])
    pat = patient(
        "Doe",
        managingOrganization={"reference": f"Organization/{org}"},
        generalPractitioner=[{"reference": f"Practitioner/{gp}"}],
    )
    obs = [
        observation(f"Patient/{pat}", performer=[{"reference": f"Practitioner/{gp}"}]),
        observation(f"Patient/{pat}"),
    ]
    return {"org": org, "gp": gp, "patient": pat, "obs": obs}


def test_include_follows_references_once(record):
    page = run("Observation", "_include=Observation:subject")
    assert ids(page) == record["obs"]
    assert included(page) == [f"Patient/{record['patient']}"]  # two references, one entry


def test_include_with_target_type(record):
    assert included(run("Observation", "_include=Observation:performer:Practitioner")) == [
        f"Practitioner/{record['gp']}"
    ]
    assert included(run("Observation", "_include=Observation:performer:Organization")) == []


def test_include_wildcard(record):
    page = run("Observation", "_include=*")
    assert sorted(included(page)) == sorted([f"Patient/{record['patient']}", f"Practitioner/{record['gp']}"])
    page = run("Patient", "_include=Patient:*")
    assert sorted(included(page)) == sorted([f"Organization/{record['org']}", f"Practitioner/{record['gp']}"])


def test_revinclude(record):
    page = run("Patient", f"_id={record['patient']}&_revinclude=Observation:subject")
    assert ids(page) == [record["patient"]]
    assert included(page) == [f"Observation/{o}" for o in record["obs"]]


def test_revinclude_wildcard(record):
    page = run("Practitioner", "_revinclude=*")
    assert sorted(included(page)) == sorted(
        [f"Patient/{record['patient']}", f"Observation/{record['obs'][0]}"]
    )


def test_include_and_revinclude_together(record):
    page = run("Patient", "_include=Patient:organization&_revinclude=Observation:patient")
    assert sorted(included(page)) == sorted(
        [f"Organization/{record['org']}", *(f"Observation/{o}" for o in record["obs"])]
    )


def test_iterate(record):
    page = run("Observation", "_include=Observation:subject&_include:iterate=Patient:organization")
    assert included(page) == [f"Patient/{record['patient']}", f"Organization/{record['org']}"]
    # Without :iterate the second directive applies to the matches only (Observations): nothing.
    page = run("Observation", "_include=Observation:subject&_include=Patient:organization")
    assert included(page) == [f"Patient/{record['patient']}"]


def test_revinclude_iterate(record):
    page = run("Organization", "_revinclude=Patient:organization&_revinclude:iterate=Observation:subject")
    assert included(page) == [f"Patient/{record['patient']}", *(f"Observation/{o}" for o in record["obs"])]


def test_iterate_through_a_cycle_stops_and_never_repeats():
    first = observation()
    second = observation(hasMember=[{"reference": f"Observation/{first}"}])
    # Close the cycle: first -> second -> first.
    from resources.search.tests.results_support import SYSTEM
    from resources.services import resource_update

    resource_update(
        SYSTEM,
        resource_type="Observation",
        fhir_id=first,
        body={
            "resourceType": "Observation",
            "id": first,
            "status": "final",
            "code": {"text": "x"},
            "hasMember": [{"reference": f"Observation/{second}"}],
        },
    )
    page = run("Observation", f"_id={first}&_include:iterate=Observation:has-member")
    assert ids(page) == [first]
    assert included(page) == [f"Observation/{second}"]


def test_iteration_depth_is_bounded(settings):
    settings.FHIR_MAX_INCLUDE_DEPTH = 1
    chain = [observation()]
    for _ in range(4):
        chain.append(observation(hasMember=[{"reference": f"Observation/{chain[-1]}"}]))
    page = run("Observation", f"_id={chain[-1]}&_include:iterate=Observation:has-member")
    assert included(page) == [f"Observation/{chain[-2]}", f"Observation/{chain[-3]}"]


def test_deleted_and_missing_targets_are_absent(record):
    delete("Organization", record["org"])
    page = run("Patient", "_include=Patient:organization&_include=Patient:general-practitioner")
    assert included(page) == [f"Practitioner/{record['gp']}"]
    dangling = observation("Patient/does-not-exist")
    assert included(run("Observation", f"_id={dangling}&_include=Observation:subject")) == []


def test_matches_are_not_repeated_as_includes():
    first = observation()
    second = observation(hasMember=[{"reference": f"Observation/{first}"}])
    page = run("Observation", "_include=Observation:has-member")
    assert ids(page) == [first, second]
    assert included(page) == []


def test_includes_follow_the_page_only(record):
    page = run("Observation", "_include=Observation:performer", count=1)
    assert ids(page) == [record["obs"][0]]
    assert included(page) == [f"Practitioner/{record['gp']}"]
    page = run("Observation", "_include=Observation:performer", count=1, cursor=page.next_cursor)
    assert included(page) == []


def test_one_statement_per_level(record):
    query = "_include=Observation:subject&_include:iterate=Patient:organization&_revinclude=Provenance:target"
    with CaptureQueriesContext(connection) as queries:
        page = run("Observation", query)
    assert len(page.included) == 2
    assert len(queries) == 1 + 2  # the page, then two include levels (the third finds nothing to follow)


def test_include_cap_reports_truncation(record, settings):
    settings.FHIR_MAX_INCLUDED = 1
    page = run("Observation", "_include=*")
    assert len(page.included) == 1
    assert page.notes and page.notes[0].code == "too-costly"


@pytest.mark.parametrize(
    "query",
    [
        "_include=Observation",
        "_include=Observation:",
        "_include=a:b:c:d",
        "_include:reverse=Observation:subject",
    ],
)
def test_malformed_include_is_400(query):
    with pytest.raises(FhirError) as caught:
        run("Observation", query)
    assert caught.value.status == 400


@pytest.mark.parametrize(
    "value",
    [
        "Nope:subject",
        "Observation:nope",
        "Observation:code",
        "Observation:subject:Nope",
        "Observation:subject:Medication",
    ],
)
def test_unknown_include_is_ignored_or_refused_when_strict(value):
    page = run("Observation", f"_include={value}")
    assert page.ignored == ["_include"]
    with pytest.raises(FhirError) as caught:
        run("Observation", f"_include={value}", strict=True)
    assert caught.value.status == 400
