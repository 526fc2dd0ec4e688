"""Validators of access rules: which rows each one's narrowing keeps, for every type involved, for
each kind of caller; FhirPath checks; composition; refusals at load time; and the number of queries a
narrowed search costs (bounded, whatever the amount of data)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.models import BooleanField, Case, ExpressionWrapper, IntegerField, Q, Value, When
from django.test.utils import CaptureQueriesContext

from authz.context import AccessContext
from authz.validators import REGISTRY, build
from authz.validators.base import EVERYTHING, NOTHING, RuleError, Validator
from resources.models import Resource
from resources.services import resource_delete, resource_update

pytestmark = pytest.mark.django_db

SYSTEM = AccessContext.system("test")
# Every type the personas below touch: a narrowing must keep exactly the expected ids of each.
TYPES = (
    "Organization",
    "PractitionerRole",
    "Practitioner",
    "Patient",
    "RelatedPerson",
    "Device",
    "CareTeam",
    "Observation",
    "Condition",
    "Encounter",
)


def put(resource_type: str, fhir_id: str, **body) -> None:
    resource_update(
        SYSTEM,
        resource_type=resource_type,
        fhir_id=fhir_id,
        body={"resourceType": resource_type, "id": fhir_id, **body},
    )


def ref(reference: str) -> dict:
    return {"reference": reference}


def patient(
    fhir_id: str, *, org: str | None = None, gp: str | None = None, links: tuple[str, ...] = ()
) -> None:
    body: dict = {"name": [{"family": fhir_id}]}
    if org:
        body["managingOrganization"] = ref(f"Organization/{org}")
    if gp:
        body["generalPractitioner"] = [ref(gp)]
    if links:
        body["link"] = [{"other": ref(f"Patient/{other}"), "type": "seealso"} for other in links]
    put("Patient", fhir_id, **body)
    # Clinical data in the patient's compartment.
    put(
        "Observation",
        f"obs-{fhir_id}",
        status="final",
        code={"text": "weight"},
        subject=ref(f"Patient/{fhir_id}"),
    )
    put("Condition", f"cond-{fhir_id}", subject=ref(f"Patient/{fhir_id}"))
    put(
        "Encounter",
        f"enc-{fhir_id}",
        status="finished",
        subject=ref(f"Patient/{fhir_id}"),
        **{"class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}},
    )


def role(fhir_id: str, practitioner: str, org: str, active: bool | None) -> None:
    body: dict = {
        "practitioner": ref(f"Practitioner/{practitioner}"),
        "organization": ref(f"Organization/{org}"),
    }
    if active is not None:
        body["active"] = active
    put("PractitionerRole", fhir_id, **body)


def care_team(fhir_id: str, subject: str, member: str, status: str | None) -> None:
    body: dict = {"subject": ref(f"Patient/{subject}"), "participant": [{"member": ref(member)}]}
    if status:
        body["status"] = status
    put("CareTeam", fhir_id, **body)


@pytest.fixture
def world() -> None:
    """Two provider organisations (org-a with a child and a grandchild through partOf, org-b), their
    staff with roles in and out of force, their patients (pat-1 linked both ways), a RelatedPerson,
    a Device, care teams, and clinical data for every patient."""
    put("Organization", "org-a", name="A")
    put("Organization", "org-a-child", name="A child", partOf=ref("Organization/org-a"))
    put("Organization", "org-a-grandchild", name="A grandchild", partOf=ref("Organization/org-a-child"))
    put("Organization", "org-b", name="B")
    for practitioner in ("pr-alice", "pr-bob", "pr-carol", "pr-dave", "pr-outsider"):
        put("Practitioner", practitioner, name=[{"family": practitioner}])
    role("role-alice-a", "pr-alice", "org-a", active=True)
    role("role-alice-b-old", "pr-alice", "org-b", active=False)
    role("role-bob-b", "pr-bob", "org-b", active=None)  # no `active`: in force
    role("role-carol-child", "pr-carol", "org-a-child", active=True)
    role("role-dave-a-old", "pr-dave", "org-a", active=False)

    patient("pat-1", org="org-a", gp="Practitioner/pr-alice", links=("pat-1-dup",))
    patient("pat-1-dup")
    patient("pat-1-old", links=("pat-1",))
    patient("pat-child", org="org-a-child", gp="PractitionerRole/role-bob-b")
    patient("pat-grandchild", org="org-a-grandchild", gp="PractitionerRole/role-alice-b-old")
    patient("pat-b", org="org-b", gp="Organization/org-b")
    patient("pat-x")

    put("RelatedPerson", "rp-1", patient=ref("Patient/pat-1"))
    put("Device", "dev-1", status="active")
    put("Observation", "obs-dev", status="final", code={"text": "reading"}, device=ref("Device/dev-1"))
    put(
        "Observation",
        "obs-rp",
        status="preliminary",
        code={"text": "note"},
        performer=[ref("RelatedPerson/rp-1")],
    )
    put(
        "Observation",
        "obs-carol",
        status="final",
        code={"text": "bp"},
        subject=ref("Patient/pat-child"),
        performer=[ref("Practitioner/pr-carol")],
    )
    put(
        "Encounter",
        "enc-carol",
        status="finished",
        participant=[{"individual": ref("Practitioner/pr-carol")}],
        **{"class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}},
    )

    care_team("ct-direct", "pat-x", "Practitioner/pr-carol", "active")
    care_team("ct-ended", "pat-1-dup", "Practitioner/pr-carol", "inactive")
    care_team("ct-role", "pat-b", "PractitionerRole/role-alice-a", "proposed")
    care_team("ct-org", "pat-child", "Organization/org-b", None)
    care_team("ct-old-role", "pat-grandchild", "PractitionerRole/role-alice-b-old", "active")


def context(identity: str | None, role: str | None = None) -> AccessContext:
    return AccessContext(role=role or (identity.split("/")[0] if identity else "Service"), identity=identity)


def rows(resource_type: str, condition: Q) -> set[str]:
    found = (
        Resource.objects.system("test").filter(resource_type=resource_type, deleted=False).filter(condition)
    )
    return set(found.values_list("fhir_id", flat=True))


def visible(validator: Validator, identity: str | None, resource_type: str) -> set[str]:
    condition = validator.narrowing(context(identity), resource_type)
    assert condition is not None
    return rows(resource_type, condition)


def assert_sees(validator: Validator, identity: str | None, expected: dict[str, set[str]]) -> None:
    """`expected` per type; a type not named must be empty. Also checks the "*" narrowing (a rule
    over several types) keeps the same rows."""
    ctx = context(identity)
    star = validator.narrowing(ctx, "*")
    for resource_type in TYPES:
        wanted = expected.get(resource_type, set())
        assert visible(validator, identity, resource_type) == wanted, resource_type
        assert rows(resource_type, star) == wanted, f"{resource_type} via *"


def clinical(*patients: str) -> dict[str, set[str]]:
    return {
        "Observation": {f"obs-{p}" for p in patients},
        "Condition": {f"cond-{p}" for p in patients},
        "Encounter": {f"enc-{p}" for p in patients},
    }


def merged(*parts: dict[str, set[str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for part in parts:
        for key, ids in part.items():
            out[key] = out.get(key, set()) | ids
    return out


# --- Allowed / Forbidden ---------------------------------------------------------------------------


def test_allowed_and_forbidden(world):
    everything = {
        t: set(Resource.objects.system("test").filter(resource_type=t).values_list("fhir_id", flat=True))
        for t in TYPES
    }
    assert build("Allowed").narrowing(context(None), "Patient") == EVERYTHING
    assert_sees(build("Allowed"), None, everything)
    assert_sees(build("Forbidden"), "Patient/pat-1", {})


# --- compartments ----------------------------------------------------------------------------------

PAT_1_FAMILY = merged(
    {
        "Patient": {"pat-1", "pat-1-dup", "pat-1-old"},
        "RelatedPerson": {"rp-1"},
        "CareTeam": {"ct-ended"},  # in pat-1-dup's compartment, whatever its status
    },
    clinical("pat-1", "pat-1-dup", "pat-1-old"),
)


def test_patient_compartment_follows_links_both_ways(world):
    # pat-1 links to pat-1-dup (outgoing); pat-1-old links to pat-1 (incoming).
    assert_sees(build("PatientCompartment"), "Patient/pat-1", PAT_1_FAMILY)


def test_patient_compartment_links_one_level_only(world):
    # pat-1 links to pat-1-dup; pat-1-old is two links away from pat-1-dup, so its data is not
    # reached. Its Patient row is: it links to pat-1, which puts it in pat-1's compartment.
    assert_sees(
        build("PatientCompartment"),
        "Patient/pat-1-dup",
        merged(
            {
                "Patient": {"pat-1-dup", "pat-1", "pat-1-old"},
                "RelatedPerson": {"rp-1"},
                "CareTeam": {"ct-ended"},
            },
            clinical("pat-1-dup", "pat-1"),
        ),
    )


def test_patient_compartment_of_a_related_person(world):
    assert_sees(build("PatientCompartment"), "RelatedPerson/rp-1", PAT_1_FAMILY)


def test_patient_compartment_of_anyone_else_is_empty(world):
    validator = build("PatientCompartment")
    for identity in ("Practitioner/pr-alice", "Device/dev-1", None, "Patient/nobody"):
        expected = {}
        assert_sees(validator, identity, expected)


def test_practitioner_compartment(world):
    assert_sees(
        build("PractitionerCompartment"),
        "Practitioner/pr-carol",
        {
            "Practitioner": {"pr-carol"},
            "PractitionerRole": {"role-carol-child"},
            "CareTeam": {"ct-direct", "ct-ended"},
            "Observation": {"obs-carol"},
            "Encounter": {"enc-carol"},
        },
    )
    assert_sees(build("PractitionerCompartment"), "Patient/pat-1", {})


def test_related_person_compartment(world):
    assert_sees(
        build("RelatedPersonCompartment"),
        "RelatedPerson/rp-1",
        {"RelatedPerson": {"rp-1"}, "Observation": {"obs-rp"}},
    )
    assert_sees(build("RelatedPersonCompartment"), "Patient/pat-1", {})


def test_device_compartment(world):
    assert_sees(build("DeviceCompartment"), "Device/dev-1", {"Device": {"dev-1"}, "Observation": {"obs-dev"}})
    assert_sees(build("DeviceCompartment"), "Practitioner/pr-alice", {})


# --- LegitimateInterest ----------------------------------------------------------------------------

ALICE_ORG_A = merged(
    {
        "Organization": {"org-a"},
        # Every role of org-a, in force or not, and whoever holds them: the organisation's directory.
        "PractitionerRole": {"role-alice-a", "role-dave-a-old"},
        "Practitioner": {"pr-alice", "pr-dave"},
        # pat-1 is managed by org-a; pat-1-old is in pat-1's compartment (it links to pat-1), pat-1-dup
        # is not (pat-1 links to it, not the other way round).
        "Patient": {"pat-1", "pat-1-old"},
        "RelatedPerson": {"rp-1"},
    },
    clinical("pat-1"),
)


def test_legitimate_interest_of_a_practitioner(world):
    # role-alice-b-old (org-b) is not in force: org-b grants nothing.
    assert_sees(build("LegitimateInterest"), "Practitioner/pr-alice", ALICE_ORG_A)


def test_legitimate_interest_inherits_down_the_hierarchy(world):
    assert_sees(
        build({"LegitimateInterest": {"inherit": True}}),
        "Practitioner/pr-alice",
        merged(
            ALICE_ORG_A,
            {
                "Organization": {"org-a-child", "org-a-grandchild"},
                "PractitionerRole": {"role-carol-child"},
                "Practitioner": {"pr-carol"},
                "Patient": {"pat-child", "pat-grandchild"},
                "CareTeam": {"ct-org", "ct-old-role"},
                "Observation": {"obs-carol"},
            },
            clinical("pat-child", "pat-grandchild"),
        ),
    )


def test_legitimate_interest_does_not_inherit_upwards(world):
    expected = merged(
        {
            "Organization": {"org-a-child"},
            "PractitionerRole": {"role-carol-child"},
            "Practitioner": {"pr-carol"},
            "Patient": {"pat-child"},
            "CareTeam": {"ct-org"},
            "Observation": {"obs-carol"},
        },
        clinical("pat-child"),
    )
    assert_sees(build("LegitimateInterest"), "Practitioner/pr-carol", expected)
    with_grandchild = merged(
        expected,
        {"Organization": {"org-a-grandchild"}, "Patient": {"pat-grandchild"}, "CareTeam": {"ct-old-role"}},
        clinical("pat-grandchild"),
    )
    assert_sees(build({"LegitimateInterest": {"inherit": True}}), "Practitioner/pr-carol", with_grandchild)


def test_legitimate_interest_role_without_active_counts(world):
    assert_sees(
        build("LegitimateInterest"),
        "Practitioner/pr-bob",
        merged(
            {
                "Organization": {"org-b"},
                "PractitionerRole": {"role-bob-b", "role-alice-b-old"},
                "Practitioner": {"pr-bob", "pr-alice"},
                "Patient": {"pat-b"},
                "CareTeam": {"ct-role"},
            },
            clinical("pat-b"),
        ),
    )


def test_legitimate_interest_inactive_role_or_none_grants_nothing(world):
    for validator in (build("LegitimateInterest"), build({"LegitimateInterest": {"inherit": True}})):
        assert_sees(validator, "Practitioner/pr-dave", {})
        assert_sees(validator, "Practitioner/pr-outsider", {})
        assert_sees(validator, "RelatedPerson/rp-1", {})
        assert_sees(validator, None, {})


def test_legitimate_interest_ends_with_the_role(world):
    resource_delete(SYSTEM, resource_type="PractitionerRole", fhir_id="role-alice-a")
    assert_sees(build("LegitimateInterest"), "Practitioner/pr-alice", {})


def test_legitimate_interest_of_a_patient(world):
    assert_sees(
        build("LegitimateInterest"),
        "Patient/pat-1",
        merged(
            PAT_1_FAMILY,
            {
                "Organization": {"org-a"},
                "PractitionerRole": {"role-alice-a", "role-dave-a-old"},
                "Practitioner": {"pr-alice", "pr-dave"},
            },
        ),
    )
    # No managing organisation: its own compartment only.
    assert_sees(
        build("LegitimateInterest"),
        "Patient/pat-x",
        merged({"Patient": {"pat-x"}, "CareTeam": {"ct-direct"}}, clinical("pat-x")),
    )


# --- CareTeam ----------------------------------------------------------------------------------------


def test_care_team_direct_participant(world):
    # ct-ended names pr-carol too, but it is inactive.
    assert_sees(
        build("CareTeam"),
        "Practitioner/pr-carol",
        merged({"CareTeam": {"ct-direct"}, "Patient": {"pat-x"}}, clinical("pat-x")),
    )


def test_care_team_through_a_role_in_force(world):
    # ct-role names role-alice-a (in force); ct-old-role names role-alice-b-old (ended): not granted.
    assert_sees(
        build("CareTeam"),
        "Practitioner/pr-alice",
        merged({"CareTeam": {"ct-role"}, "Patient": {"pat-b"}}, clinical("pat-b")),
    )


def test_care_team_through_an_organization(world):
    # ct-org names org-b, where pr-bob holds a role without `active` (in force).
    assert_sees(
        build("CareTeam"),
        "Practitioner/pr-bob",
        merged(
            {"CareTeam": {"ct-org"}, "Patient": {"pat-child"}, "Observation": {"obs-carol"}},
            clinical("pat-child"),
        ),
    )


def test_care_team_grants_nothing_to_others(world):
    for identity in ("Practitioner/pr-dave", "Practitioner/pr-outsider", "Patient/pat-x", None):
        assert_sees(build("CareTeam"), identity, {})


# --- GeneralPractitioner ---------------------------------------------------------------------------


def test_general_practitioner_direct(world):
    # pat-grandchild names role-alice-b-old, which has ended.
    assert_sees(
        build("GeneralPractitioner"),
        "Practitioner/pr-alice",
        merged(
            {"Patient": {"pat-1", "pat-1-old"}, "RelatedPerson": {"rp-1"}},
            clinical("pat-1"),
        ),
    )


def test_general_practitioner_through_role_and_organization(world):
    assert_sees(
        build("GeneralPractitioner"),
        "Practitioner/pr-bob",
        merged(
            {
                "Patient": {"pat-child", "pat-b"},
                "CareTeam": {"ct-role", "ct-org"},
                "Observation": {"obs-carol"},
            },
            clinical("pat-child", "pat-b"),
        ),
    )


def test_general_practitioner_grants_nothing_to_others(world):
    for identity in ("Practitioner/pr-outsider", "Practitioner/pr-dave", "Patient/pat-1", None):
        assert_sees(build("GeneralPractitioner"), identity, {})


# --- FhirPath ----------------------------------------------------------------------------------------


def body_of(resource_type: str, fhir_id: str) -> dict:
    from resources import fhirjson

    row = Resource.objects.system("test").get(resource_type=resource_type, fhir_id=fhir_id)
    return fhirjson.loads(row.body)


def test_fhirpath_check_with_identity(world):
    validator = build({"FhirPath": {"expression": "subject.reference = 'Patient/' + %identity.id"}})
    assert validator.checks_body and not validator.can_narrow()
    assert validator.narrowing(context("Patient/pat-1"), "Observation") is None
    own, other = body_of("Observation", "obs-pat-1"), body_of("Observation", "obs-pat-b")
    assert validator.check(context("Patient/pat-1"), own) is True
    assert validator.check(context("Patient/pat-1"), other) is False
    assert validator.check(context("Practitioner/pr-alice"), own) is False
    assert validator.check(context(None), own) is False  # %identity is empty: [] is not [true]


def test_fhirpath_resource_variable_and_exact_true(world):
    obs = body_of("Observation", "obs-pat-1")
    ctx = context("Patient/pat-1")
    assert build({"FhirPath": {"expression": "%resource.status = 'final'"}}).check(ctx, obs) is True
    assert build({"FhirPath": {"expression": "status"}}).check(ctx, obs) is False  # ['final']
    assert build({"FhirPath": {"expression": "true | true"}}).check(ctx, obs) is True  # union: [true]
    assert build({"FhirPath": {"expression": "(true).combine(true)"}}).check(ctx, obs) is False
    assert build({"FhirPath": {"expression": "1"}}).check(ctx, obs) is False
    # An evaluation error refuses: a string plus a number.
    assert build({"FhirPath": {"expression": "status + 1 = 2"}}).check(ctx, obs) is False


def test_fhirpath_search_narrows_with_identity(world):
    validator = build(
        {"FhirPath": {"expression": "status = 'final'", "search": "status=final&subject=%identity"}}
    )
    assert validator.can_narrow()
    assert visible(validator, "Patient/pat-1", "Observation") == {"obs-pat-1"}
    assert visible(validator, "Patient/pat-b", "Observation") == {"obs-pat-b"}
    assert visible(validator, None, "Observation") == set()  # no identity: nothing
    assert validator.narrowing(context(None), "Observation") == NOTHING


def test_fhirpath_search_over_several_types(world):
    validator = build({"FhirPath": {"expression": "true", "search": "subject=%identity"}})
    validator.validate_types(["Observation", "Condition"])
    star = validator.narrowing(context("Patient/pat-1"), "*")
    assert rows("Observation", star) == {"obs-pat-1"}
    assert rows("Condition", star) == {"cond-pat-1"}
    # Without the rule's types, "*" covers every type the search fits (Patient has no `subject`).
    unbound = build({"FhirPath": {"expression": "true", "search": "subject=%identity"}})
    star = unbound.narrowing(context("Patient/pat-1"), "*")
    assert rows("Observation", star) == {"obs-pat-1"}
    assert rows("Encounter", star) == {"enc-pat-1"}
    assert rows("Patient", star) == set()
    # _id and _lastUpdated compile the same for every type.
    by_id = build({"FhirPath": {"expression": "true", "search": "_id=obs-pat-1,cond-pat-1"}})
    by_id.validate_types(None)
    assert rows("Observation", by_id.narrowing(context(None), "*")) == {"obs-pat-1"}
    assert rows("Condition", by_id.narrowing(context(None), "*")) == {"cond-pat-1"}


def test_fhirpath_search_that_does_not_fit_the_rule_types_is_refused():
    validator = build({"FhirPath": {"expression": "true", "search": "subject=%identity"}})
    with pytest.raises(RuleError, match="Organization"):
        validator.validate_types(["Observation", "Organization"])
    validator.validate_types(None)  # every type: those without `subject` match nothing
    with pytest.raises(RuleError, match="fits no resource type"):
        build(
            {"FhirPath": {"expression": "true", "search": "link=Patient/x&subject=Patient/y"}}
        ).validate_types(None)
    with pytest.raises(RuleError, match="status"):
        build(
            {"FhirPath": {"expression": "true", "search": "status=x:y:z&_lastUpdated=notadate"}}
        ).validate_types(["Observation"])


@pytest.mark.parametrize(
    "params, message",
    [
        ({"expression": "status = = 1"}, "not valid FHIRPath"),
        ({"expression": "status.where("}, "not valid FHIRPath"),
        ({"expression": "foo bar"}, "not valid FHIRPath"),
        ({"expression": "status.nosuchfunction()"}, "cannot be evaluated"),
        ({"expression": "%identiy.id = 'x'"}, "cannot be evaluated"),
        ({"expression": ""}, "required"),
        ({"expression": 3}, "required"),
        ({}, "required"),
        ({"expression": "true", "search": ""}, "search"),
        ({"expression": "true", "search": "nosuchparam=1"}, "nosuchparam"),
        ({"expression": "true", "search": "_count=10"}, "criteria only"),
        ({"expression": "true", "search": "status"}, "not a query string"),
        ({"expression": "true", "search": "status="}, "no value"),
        ({"expression": "true", "search": "&"}, "search"),
        ({"expression": "true", "searchh": "status=final"}, "unknown parameter"),
    ],
)
def test_fhirpath_refused_at_load(params, message):
    with pytest.raises(RuleError, match=message):
        build({"FhirPath": params})


def test_fhirpath_params_round_trip():
    spec = {"FhirPath": {"expression": "status = 'final'", "search": "status=final"}}
    assert build(spec).as_yaml() == spec
    assert build({"FhirPath": {"expression": "true"}}).as_yaml() == {"FhirPath": {"expression": "true"}}


# --- AnyOf / AllOf --------------------------------------------------------------------------------


def test_any_of_unions_sql_parts(world):
    validator = build({"AnyOf": ["PatientCompartment", "GeneralPractitioner"]})
    assert validator.check(context("Patient/pat-1"), {}) is None and not validator.checks_body
    assert_sees(validator, "Patient/pat-1", PAT_1_FAMILY)
    assert_sees(
        validator,
        "Practitioner/pr-alice",
        merged({"Patient": {"pat-1", "pat-1-old"}, "RelatedPerson": {"rp-1"}}, clinical("pat-1")),
    )


def test_any_of_with_allowed_is_everything(world):
    validator = build({"AnyOf": ["Forbidden", "Allowed"]})
    assert validator.narrowing(context(None), "Patient") == EVERYTHING


def test_any_of_body_checks_only(world):
    validator = build(
        {
            "AnyOf": [
                {"FhirPath": {"expression": "status = 'final'"}},
                {"FhirPath": {"expression": "status = 'amended'"}},
            ]
        }
    )
    assert validator.checks_body and not validator.can_narrow()
    assert validator.narrowing(context(None), "Observation") is None
    assert validator.check(context(None), body_of("Observation", "obs-pat-1")) is True
    assert validator.check(context(None), body_of("Observation", "obs-rp")) is False  # preliminary


def test_all_of_intersects(world):
    validator = build({"AllOf": [{"LegitimateInterest": {"inherit": True}}, "GeneralPractitioner"]})
    assert_sees(
        validator,
        "Practitioner/pr-alice",
        merged({"Patient": {"pat-1", "pat-1-old"}, "RelatedPerson": {"rp-1"}}, clinical("pat-1")),
    )
    assert_sees(build({"AllOf": ["PatientCompartment", "Forbidden"]}), "Patient/pat-1", {})


def test_all_of_with_a_body_check(world):
    validator = build({"AllOf": ["PatientCompartment", {"FhirPath": {"expression": "status = 'final'"}}]})
    assert validator.checks_body and validator.can_narrow()
    assert visible(validator, "Patient/pat-1", "Observation") == {
        "obs-pat-1",
        "obs-pat-1-dup",
        "obs-pat-1-old",
    }
    assert validator.check(context("Patient/pat-1"), body_of("Observation", "obs-pat-1")) is True
    assert validator.check(context("Patient/pat-1"), body_of("Observation", "obs-rp")) is False
    only_checks = build({"AllOf": [{"FhirPath": {"expression": "true"}}]})
    assert only_checks.narrowing(context(None), "Observation") is None and not only_checks.can_narrow()


@pytest.mark.parametrize(
    "spec",
    [
        {"AnyOf": ["PatientCompartment", {"FhirPath": {"expression": "true"}}]},
        {
            "AnyOf": [
                {"FhirPath": {"expression": "true", "search": "_id=x"}},
                {"FhirPath": {"expression": "true"}},
            ]
        },
        {
            "AnyOf": [
                {"AllOf": ["CareTeam", {"FhirPath": {"expression": "true"}}]},
                {"FhirPath": {"expression": "true"}},
            ]
        },
    ],
)
def test_any_of_refuses_mixing_body_checks_with_sql(spec):
    with pytest.raises(RuleError, match="AnyOf cannot mix FhirPath"):
        build(spec)


def test_composites_round_trip():
    spec = {
        "AnyOf": ["PatientCompartment", {"LegitimateInterest": {"inherit": True}}, {"AllOf": ["CareTeam"]}]
    }
    assert build(spec).as_yaml() == spec


def test_narrowings_combine_with_other_conditions(world):
    patient_ctx, gp_ctx = context("Patient/pat-1"), context("Practitioner/pr-bob")
    mine = build("PatientCompartment").narrowing(patient_ctx, "Patient")
    bobs = build("GeneralPractitioner").narrowing(gp_ctx, "Patient")
    assert rows("Patient", mine | bobs) == {"pat-1", "pat-1-dup", "pat-1-old", "pat-child", "pat-b"}
    assert rows("Patient", mine & Q(fhir_id__startswith="pat-1-")) == {"pat-1-dup", "pat-1-old"}
    assert rows("Patient", ~mine) == {"pat-child", "pat-grandchild", "pat-b", "pat-x"}
    assert rows("Patient", Q(fhir_id="pat-x") | mine) == {"pat-1", "pat-1-dup", "pat-1-old", "pat-x"}


def test_narrowings_work_as_annotations_and_cases(world):
    # The rule engine decides one row with an annotation per rule, and tags search rows with a CASE.
    ctx = context("Patient/pat-1")
    compartment = build("PatientCompartment").narrowing(ctx, "*")
    interest = build("LegitimateInterest").narrowing(ctx, "*")
    found = (
        Resource.objects.system("test")
        .filter(resource_type__in=["Patient", "Practitioner", "Observation"])
        .filter(compartment | interest)
        .annotate(
            own=ExpressionWrapper(compartment, output_field=BooleanField()),
            rule=Case(
                When(compartment, then=Value(1)), When(interest, then=Value(2)), output_field=IntegerField()
            ),
        )
        .values_list("fhir_id", "own", "rule")
    )
    assert {(fhir_id, bool(own), rule) for fhir_id, own, rule in found} == {
        ("pat-1", True, 1),
        ("pat-1-dup", True, 1),
        ("pat-1-old", True, 1),
        ("obs-pat-1", True, 1),
        ("obs-pat-1-dup", True, 1),
        ("obs-pat-1-old", True, 1),
        ("pr-alice", False, 2),
        ("pr-dave", False, 2),
    }


# --- build -----------------------------------------------------------------------------------------


def test_registry_names():
    assert set(REGISTRY) == {
        "Allowed",
        "Forbidden",
        "PatientCompartment",
        "PractitionerCompartment",
        "RelatedPersonCompartment",
        "DeviceCompartment",
        "LegitimateInterest",
        "CareTeam",
        "GeneralPractitioner",
        "Subscriber",
        "FhirPath",
        "AnyOf",
        "AllOf",
    }
    assert all(cls.name == name for name, cls in REGISTRY.items())


@pytest.mark.parametrize(
    "spec, message",
    [
        ("NoSuchValidator", "unknown validator"),
        ({"NoSuchValidator": {}}, "unknown validator"),
        ({"Allowed": {}, "Forbidden": {}}, "one name"),
        ([], "one name"),
        (3, "one name"),
        ({"PatientCompartment": {"x": 1}}, "takes no parameters"),
        ({"LegitimateInterest": {"inherit": "yes"}}, "true or false"),
        ({"LegitimateInterest": {"inherit": 1}}, "true or false"),
        ({"LegitimateInterest": {"inherits": True}}, "unknown parameter"),
        ({"LegitimateInterest": ["inherit"]}, "mapping"),
        ({"LegitimateInterest": {1: True}}, "mapping"),
        ("AnyOf", "non-empty list"),
        ({"AnyOf": []}, "non-empty list"),
        ({"AllOf": {"parts": ["CareTeam"]}}, "non-empty list"),
        ({"AllOf": ["CareTeam", "Nope"]}, "unknown validator"),
    ],
)
def test_bad_specs_are_refused(spec, message):
    with pytest.raises(RuleError, match=message):
        build(spec)


def test_params_round_trip():
    assert build("LegitimateInterest").as_yaml() == "LegitimateInterest"
    assert build({"LegitimateInterest": {"inherit": False}}).as_yaml() == "LegitimateInterest"
    assert build({"LegitimateInterest": {"inherit": True}}).as_yaml() == {
        "LegitimateInterest": {"inherit": True}
    }
    assert build({"CareTeam": None}).as_yaml() == "CareTeam"


# --- query counts ---------------------------------------------------------------------------------

# (validator, identity, queries for working out the narrowing + running one narrowed search).
BOUNDS = [
    ("PatientCompartment", "Patient/pat-1", 1),  # the search (the patient and its links are a subquery)
    ("PatientCompartment", "RelatedPerson/rp-1", 2),  # its patient and their links in one; the search
    ("PractitionerCompartment", "Practitioner/pr-carol", 1),
    ("DeviceCompartment", "Device/dev-1", 1),
    ("LegitimateInterest", "Practitioner/pr-alice", 2),  # organisations; the search
    # organisations, one query per level (child, grandchild, and the one that finds nothing); the search
    ({"LegitimateInterest": {"inherit": True}}, "Practitioner/pr-alice", 5),
    ("LegitimateInterest", "Patient/pat-1", 2),  # managing organisation; the search
    ("CareTeam", "Practitioner/pr-alice", 3),  # roles, organisations; the search
    ("GeneralPractitioner", "Practitioner/pr-bob", 3),
    ({"FhirPath": {"expression": "true", "search": "subject=%identity"}}, "Patient/pat-1", 1),
    ({"AnyOf": ["PatientCompartment", "LegitimateInterest"]}, "Patient/pat-1", 2),  # lookups memoised
]


def _search_queries(spec: object, identity: str, resource_type: str) -> tuple[int, int]:
    validator = build(spec)
    ctx = context(identity)
    with CaptureQueriesContext(connection) as captured:
        found = list(
            Resource.objects.system("test")
            .filter(resource_type=resource_type, deleted=False)
            .filter(validator.narrowing(ctx, resource_type))
            .values_list("fhir_id", flat=True)
        )
        validator.narrowing(ctx, resource_type)  # a second narrowing in the same request is free
    return len(captured), len(found)


@pytest.mark.parametrize("spec, identity, bound", BOUNDS)
def test_narrowed_search_costs_a_fixed_number_of_queries(world, spec, identity, bound):
    before, found_before = _search_queries(spec, identity, "Observation")
    assert before == bound
    # Ten times the patients, observations, links and staff in the same organisations.
    for n in range(30):
        patient(
            f"more-{n}",
            org=("org-a", "org-a-child", "org-b")[n % 3],
            links=("pat-1",),
            gp="Practitioner/pr-bob",
        )
        role(f"more-role-{n}", "pr-carol", "org-a-grandchild", active=True)
        care_team(f"more-ct-{n}", f"more-{n}", "PractitionerRole/role-alice-a", "active")
    after, found_after = _search_queries(spec, identity, "Observation")
    assert after == before
    assert found_after >= found_before
