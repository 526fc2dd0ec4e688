"""Search scopes other than one type: system search (https://hl7.org/fhir/R4/search.html#all),
compartment search (#compartments) and Patient `$everything`
(https://hl7.org/fhir/R4/patient-operation-everything.html)."""

import time
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from resources.outcomes import FhirError
from resources.search.engine import everything

from .results_support import SYSTEM, create, delete, ids, observation, patient, run

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_records():
    org = create("Organization", name="Clinic")
    gp = create("Practitioner", name=[{"family": "Who"}])
    med = create("Medication", code={"text": "aspirin"})
    other_patient = patient("Other")
    alice = patient("Alice", managingOrganization={"reference": f"Organization/{org}"})
    bob = patient("Bob", link=[{"other": {"reference": f"Patient/{other_patient}"}, "type": "seealso"}])
    alice_obs = observation(f"Patient/{alice}", performer=[{"reference": f"Practitioner/{gp}"}])
    alice_rx = create(
        "MedicationRequest",
        status="active",
        intent="order",
        subject={"reference": f"Patient/{alice}"},
        medicationReference={"reference": f"Medication/{med}"},
    )
    bob_obs = observation(f"Patient/{bob}")
    unrelated_org = create("Organization", name="Elsewhere")
    return locals()


def test_system_search_with_type(two_records):
    r = two_records
    page = run(None, "_type=Patient,Organization&_sort=_lastUpdated")
    assert ids(page) == [r["org"], r["other_patient"], r["alice"], r["bob"], r["unrelated_org"]]


def test_system_search_with_type_and_a_parameter_of_all_types(two_records):
    page = run(None, "_type=Patient,Practitioner&name=who")
    assert ids(page) == [two_records["gp"]]


def test_system_search_parameter_not_common_to_the_types_is_ignored(two_records):
    page = run(None, "_type=Patient,Organization&gender=male")
    assert page.ignored == ["gender"]
    with pytest.raises(FhirError):
        run(None, "_type=Patient,Organization&gender=male", strict=True)


def test_system_search_without_type_takes_common_parameters(two_records):
    r = two_records
    page = run(None, f"_id={r['alice']},{r['org']}")
    assert sorted(ids(page)) == sorted([r["alice"], r["org"]])
    since = (timezone.now() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert len(run(None, f"_lastUpdated=gt{since}", count=100).matches) == 10
    page = run(None, "name=Alice")
    assert page.ignored == ["name"] and len(page.matches) == 10
    with pytest.raises(FhirError) as caught:
        run(None, "name=Alice", strict=True)
    assert "name" in caught.value.issues[0].diagnostics


def test_system_search_by_tag_across_types():
    tag = {"tag": [{"system": "urn:t", "code": "x"}]}
    tagged = [patient("T", meta=tag), create("Organization", name="T", meta=tag)]
    patient("Untagged")
    assert ids(run(None, "_tag=urn:t|x")) == tagged


def test_system_search_unknown_type_is_400():
    with pytest.raises(FhirError) as caught:
        run(None, "_type=Patient,Nope")
    assert caught.value.status == 400


def test_compartment_search_of_one_type(two_records):
    r = two_records
    assert ids(run("Observation", "", compartment=("Patient", r["alice"]))) == [r["alice_obs"]]
    assert ids(run("Observation", "", compartment=("Patient", r["bob"]))) == [r["bob_obs"]]
    assert ids(run("Observation", "", compartment=("Patient", "nobody"))) == []


def test_compartment_search_with_criteria_and_includes(two_records):
    r = two_records
    page = run(
        "MedicationRequest",
        "status=active&_include=MedicationRequest:medication",
        compartment=("Patient", r["alice"]),
    )
    assert ids(page) == [r["alice_rx"]]
    assert [s.fhir_id for s in page.included] == [r["med"]]
    assert ids(run("MedicationRequest", "status=stopped", compartment=("Patient", r["alice"]))) == []


def test_compartment_search_of_every_type(two_records):
    r = two_records
    page = run(None, "", compartment=("Patient", r["alice"]))
    assert ids(page) == [r["alice"], r["alice_obs"], r["alice_rx"]]
    page = run(None, "_type=Observation", compartment=("Patient", r["alice"]))
    assert ids(page) == [r["alice_obs"]]
    # Bob's Patient.link puts Bob in the linked patient's compartment (not the other way round).
    assert ids(run("Patient", "", compartment=("Patient", r["other_patient"]))) == [
        r["other_patient"],
        r["bob"],
    ]
    assert ids(run("Patient", "", compartment=("Patient", r["bob"]))) == [r["bob"]]


def test_compartment_search_of_practitioner(two_records):
    r = two_records
    assert ids(run("Observation", "", compartment=("Practitioner", r["gp"]))) == [r["alice_obs"]]


def test_compartment_errors(two_records):
    with pytest.raises(FhirError) as caught:
        run("Observation", "", compartment=("Organization", two_records["org"]))
    assert caught.value.status == 404
    with pytest.raises(FhirError) as caught:
        run("Organization", "", compartment=("Patient", two_records["alice"]))
    assert caught.value.status == 400


def record_of(patient_id, **kw) -> list[str]:
    kw.setdefault("count", 100)
    page = everything(
        SYSTEM, patient_id=patient_id, since=kw.pop("since", None), types=kw.pop("types", None), **kw
    )
    return [f"{s.resource_type}/{s.fhir_id}" for s in page.matches]


def test_everything_holds_the_patient_their_compartment_and_supporting_resources(two_records):
    r = two_records
    assert sorted(record_of(r["alice"])) == sorted(
        [
            f"Organization/{r['org']}",
            f"Practitioner/{r['gp']}",
            f"Medication/{r['med']}",
            f"Patient/{r['alice']}",
            f"Observation/{r['alice_obs']}",
            f"MedicationRequest/{r['alice_rx']}",
        ]
    )
    assert sorted(record_of(r["bob"])) == sorted([f"Patient/{r['bob']}", f"Observation/{r['bob_obs']}"])
    # Bob links to the other patient, so Bob's Patient resource (and only that) is in their record.
    assert record_of(r["other_patient"]) == [f"Patient/{r['other_patient']}", f"Patient/{r['bob']}"]
    assert record_of("nobody") == []


def test_everything_since_and_type(two_records):
    r = two_records
    time.sleep(0.002)
    later = timezone.now()
    later = later.replace(microsecond=later.microsecond // 1000 * 1000)  # stored times are in ms
    newer = observation(f"Patient/{r['alice']}")
    assert record_of(r["alice"], since=later) == [f"Observation/{newer}"]
    assert record_of(r["alice"], types=["Observation", "Practitioner"]) == [
        f"Practitioner/{r['gp']}",
        f"Observation/{r['alice_obs']}",
        f"Observation/{newer}",
    ]


def test_everything_of_all_patients(two_records):
    r = two_records
    found = record_of(None)
    assert f"Organization/{r['unrelated_org']}" not in found
    assert {f"Patient/{r['alice']}", f"Patient/{r['bob']}", f"Observation/{r['bob_obs']}"} <= set(found)
    assert len(found) == len(set(found))


def test_everything_pages_in_one_statement_each(two_records):
    r = two_records
    seen, cursor = [], None
    while True:
        with CaptureQueriesContext(connection) as queries:
            page = everything(SYSTEM, patient_id=r["alice"], since=None, types=None, count=2, cursor=cursor)
        assert len(queries) == 1
        seen += [s.fhir_id for s in page.matches]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert len(seen) == 6 == len(set(seen))


def test_everything_leaves_out_deleted_resources(two_records):
    r = two_records
    delete("Observation", r["alice_obs"])
    delete("Organization", r["org"])
    assert f"Observation/{r['alice_obs']}" not in record_of(r["alice"])
    assert f"Organization/{r['org']}" not in record_of(r["alice"])
