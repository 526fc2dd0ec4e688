"""Chained parameters and reverse chaining (search.html#chaining, #has): several levels, references
with several target types, deleted targets, nested _has, and the target scope hook."""

import pytest

from resources.models import ReferenceIndex, Resource, StringIndex, TokenIndex
from resources.search.normalize import normalize_string

from .helpers import criteria, diagnostics, ids, index, refused, resource

pytestmark = pytest.mark.django_db


def name(row, param, text):
    index(StringIndex, row, param, value=normalize_string(text), exact=text)


def refer(row, param, target):
    index(ReferenceIndex, row, param, target_type=target.resource_type, target_id=target.fhir_id)


def code(row, value):
    index(TokenIndex, row, "code", system="http://loinc.org", code=value)


@pytest.fixture
def world():
    acme = resource("Organization", "acme")
    name(acme, "name", "Acme Hospital")
    other = resource("Organization", "other")
    name(other, "name", "Other Clinic")
    peter = resource("Patient", "peter")
    name(peter, "name", "Peter Pan")
    refer(peter, "organization", acme)
    paul = resource("Patient", "paul")
    name(paul, "name", "Paul Smith")
    refer(paul, "organization", other)
    gone = resource("Patient", "gone", deleted=True)
    name(gone, "name", "Peter Gone")
    street = resource("Location", "street")
    name(street, "name", "Peterhouse")
    group = resource("Group", "group")

    for fhir_id, subject, loinc in [
        ("obs-peter", peter, "1234-5"),
        ("obs-paul", paul, "999-9"),
        ("obs-street", street, "1234-5"),
        ("obs-group", group, "1234-5"),
        ("obs-gone", gone, "1234-5"),
    ]:
        obs = resource("Observation", fhir_id)
        refer(obs, "subject", subject)
        if subject.resource_type == "Patient":
            refer(obs, "patient", subject)
        code(obs, loinc)
    deleted_obs = resource("Observation", "deleted-obs", deleted=True)
    refer(deleted_obs, "patient", paul)
    code(deleted_obs, "1234-5")
    return {"peter": peter, "paul": paul, "acme": acme}


@pytest.fixture
def report_chain(world):
    """A DiagnosticReport whose result is an Observation of peter."""
    obs = resource("Observation", "obs-reported")
    refer(obs, "patient", world["peter"])
    refer(obs, "subject", world["peter"])
    code(obs, "555-5")
    report = resource("DiagnosticReport", "final-report")
    refer(report, "result", obs)
    index(TokenIndex, report, "status", code="final")


@pytest.mark.parametrize(
    "query, expected",
    [
        ("subject:Patient.name=peter", {"obs-peter"}),  # not the deleted patient's observation
        ("subject.name=peter", {"obs-peter", "obs-street"}),  # Patient and Location both have `name`
        ("subject:Location.name=peter", {"obs-street"}),
        ("subject:Patient.name:exact=Peter Pan", {"obs-peter"}),
        ("subject:Patient.name:contains=smith", {"obs-paul"}),
        ("subject.name=nobody", set()),
        ("subject.name=peter,paul", {"obs-peter", "obs-paul", "obs-street"}),
        ("patient.name=peter&patient.name=paul", set()),
        ("patient.organization.name=acme", {"obs-peter"}),
        ("patient.organization:Organization.name=other", {"obs-paul"}),
        ("subject:Patient.organization.name=acme", {"obs-peter"}),
        ("subject._id=peter", {"obs-peter"}),
        ("subject:Patient._id=street", set()),
        ("subject:Patient.name:missing=false", {"obs-peter", "obs-paul"}),
    ],
)
def test_chains(world, query, expected):
    assert ids("Observation", query) == expected


@pytest.mark.parametrize(
    "query, expected",
    [
        ("_has:Observation:patient:code=1234-5", {"peter"}),  # paul's only match is deleted
        ("_has:Observation:subject:code=1234-5", {"peter"}),
        ("_has:Observation:patient:code=1234-5,999-9", {"peter", "paul"}),
        ("_has:Observation:patient:code=999-9&_has:Observation:patient:code=1234-5", set()),
        # some Observation of the patient has no 1234-5 code (peter's reported one, paul's)
        ("_has:Observation:patient:code:not=1234-5", {"peter", "paul"}),
        ("_has:Observation:patient:subject:Patient.name=paul", {"paul"}),
        ("_has:Observation:patient:_has:DiagnosticReport:result:status=final", {"peter"}),
        ("_has:Observation:patient:_id=obs-peter", {"peter"}),
    ],
)
def test_reverse_chains(world, report_chain, query, expected):
    assert ids("Patient", query) == expected


def test_has_then_forward_chain_from_another_type(world):
    assert ids("Organization", "_has:Patient:organization:_has:Observation:patient:code=1234-5") == {"acme"}
    assert ids("Location", "_has:Observation:subject:code=1234-5") == {"street"}


def test_rows_narrow_every_reached_resource(world):
    def rows(resource_type):
        everything = Resource.objects.system("test")
        return everything.exclude(fhir_id="peter") if resource_type == "Patient" else everything

    assert ids("Observation", "subject:Patient.name=peter", rows=rows) == set()
    assert ids("Observation", "subject.name=peter", rows=rows) == {"obs-street"}
    assert ids("Organization", "_has:Patient:organization:name=peter", rows=rows) == set()


@pytest.mark.parametrize(
    "name",
    [
        "subject.foo",  # no target type has `foo`
        "subject:Foo.name",
        "code.name",  # a token cannot be chained
        "_has:Foo:patient:code",
        "_has:Observation:nothing:code",
        "_has:Observation:code:code",  # not a reference
        "_has:Observation:patient:nothing",
    ],
)
def test_unknown_chains_are_ignored_or_refused_when_strict(world, name):
    lenient = criteria(
        "Observation" if not name.startswith("_has") else "Patient", [(name, "x")], strict=False
    )
    assert lenient.ignored == [name] and lenient.used == []
    error = refused("Observation" if not name.startswith("_has") else "Patient", [(name, "x")], strict=True)
    assert error.issues[0].code == "not-supported" and f"'{name}'" in diagnostics(error)


def test_types_outside_the_declared_targets_are_chained_as_given(world):
    # Observation.subject does not list Practitioner, but stored data may still point there
    doctor = resource("Practitioner", "doctor")
    name(doctor, "name", "Dr Who")
    odd = resource("Observation", "odd")
    refer(odd, "subject", doctor)
    assert ids("Observation", "subject:Practitioner.name=dr") == {"odd"}
    assert ids("Observation", "subject.name=dr") == set()  # untyped chains follow the declared targets
    assert ids("Practitioner", "_has:Observation:subject:_id=odd") == {"doctor"}


@pytest.mark.parametrize("name", ["_has:Observation", "_has:Observation:patient", "_has::patient:code"])
def test_malformed_has_is_refused(name):
    error = refused("Patient", [(name, "1")], strict=False)
    assert f"'{name}'" in diagnostics(error)


def test_bad_value_deep_in_a_chain_is_refused_naming_the_whole_parameter(world):
    error = refused("Observation", [("patient.birthdate", "not-a-date")], strict=False)
    assert "'patient.birthdate'" in diagnostics(error) and "'not-a-date'" in diagnostics(error)


def test_depth_is_bounded():
    deep = "patient.organization.partof.partof.partof.name"
    error = refused("Observation", [(deep, "x")], strict=False)
    assert "levels" in diagnostics(error)
    assert criteria("Observation", [("patient.organization.partof.partof.name", "x")]).used
