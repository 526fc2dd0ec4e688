"""Versions, history, conditional matching and write answers are decided like reads (issue 10,
items 1, 5, 6 and 13), over HTTP and against the interaction layer directly.

The oracle for a version: a copy of that version's content stored as a resource of its own and
read by the same caller. vread of the version, and its entry in every history listing, must be
exactly that read: present when it is readable, with the same body once the copy's id and meta are
set aside, and absent (404) when it is not.
"""

from __future__ import annotations

import base64

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authz import ruleset
from authz.context import AccessContext
from authz.rules import forget_rules
from conftest import Fhir, bearer
from interactions import read as door_read
from resources.outcomes import FhirError
from resources.services import resource_delete, resource_update

pytestmark = pytest.mark.django_db

SYSTEM = AccessContext.system("version leak tests")
RULES = """
rules:
  - {name: admin-all, role: Admin, resource: "*", operation: ["*", generate-token], validator: Allowed}
  - {name: patient-own, role: Patient, resource: "*", operation: [read, vread, search, history, create], validator: PatientCompartment}
  - {name: orgs-open, role: Practitioner, resource: [Organization, Location], operation: [read, vread, search, history], validator: Allowed}
  - {name: clinician, role: Practitioner, resource: "*", operation: [read, vread, search, history, create, update], validator: LegitimateInterest}
  - {name: research-bundles, role: Researcher, resource: Bundle, operation: [transaction], validator: Allowed}
  - name: research
    role: Researcher
    resource: [Patient, Observation, Condition]
    operation: [read, vread, search, history, create, update, patch]
    validator: Allowed
    property-filters:
      - {path: Patient.name, action: remove}
      - {path: Patient.identifier, action: mask}
      - {path: Patient.birthDate, action: generalize-year}
"""
SECRETS = ("Andersson", "Berg", "MRN-A", "MRN-B", "1970-05-06")


@pytest.fixture(autouse=True)
def _fresh_rule_cache():
    forget_rules()
    yield
    forget_rules()


def _put(resource_type: str, fhir_id: str, **body) -> None:
    resource_update(
        SYSTEM,
        resource_type=resource_type,
        fhir_id=fhir_id,
        body={"resourceType": resource_type, "id": fhir_id, **body},
    )


def _patient(pid: str, family: str, mrn: str, org: str) -> dict:
    return {
        "name": [{"family": family}],
        "birthDate": "1970-05-06",
        "identifier": [{"system": "urn:mrn", "value": mrn}],
        "managingOrganization": {"reference": f"Organization/{org}"},
    }


def _observation(subject: str, value: int) -> dict:
    return {
        "status": "final",
        "code": {"text": "pulse"},
        "subject": {"reference": f"Patient/{subject}"},
        "valueQuantity": {"value": value},
    }


@pytest.fixture
def world(client):
    ruleset.replace_rules(ruleset.parse_yaml(RULES))
    for org in ("org-a", "org-b"):
        _put("Organization", org, name=org)
    _put("Practitioner", "dr-a", active=True)
    _put("PractitionerRole", "role-a", practitioner={"reference": "Practitioner/dr-a"},
         organization={"reference": "Organization/org-a"})  # fmt: skip
    _put("Patient", "ann", **_patient("ann", "Andersson", "MRN-A", "org-a"))
    _put("Patient", "bob", **_patient("bob", "Berg", "MRN-B", "org-b"))
    _put("Encounter", "enc-bob", status="finished", subject={"reference": "Patient/bob"},
         **{"class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}})  # fmt: skip
    # An observation recorded for ann, then moved to bob: its first version is ann's, the second bob's.
    _put("Observation", "moved", **_observation("ann", 61))
    _put("Observation", "moved", **_observation("bob", 62))
    return Fhir(client)


def _as(fhir: Fhir, role: str, identity: str = "") -> Fhir:
    client = type(fhir.client)()
    client.defaults["HTTP_AUTHORIZATION"] = bearer(role, identity)
    return Fhir(client)


def _keys(bundle: dict) -> list[str]:
    return [
        f"{e['resource']['resourceType']}/{e['resource']['id']}/{e['resource']['meta']['versionId']}"
        for e in bundle.get("entry", [])
        if "resource" in e
    ]


# --- item 1: history ignores narrowing ------------------------------------------------------------


def test_a_type_wide_rule_on_some_types_does_not_open_system_history(world):
    """A Practitioner rule Allowed on [Organization, Location] before LegitimateInterest on `*`."""
    doctor = _as(world, "Practitioner", "Practitioner/dr-a")
    listed = _keys(doctor.get("_history?_count=500").json_body)
    assert "Patient/ann/1" in listed and "Organization/org-b/1" in listed
    assert not [key for key in listed if "bob" in key], listed
    assert "Observation/moved/1" in listed  # ann's version of it, not bob's
    assert "Observation/moved/2" not in listed


def test_researcher_history_holds_its_types_only_and_redacted(world):
    researcher = _as(world, "Researcher")
    reply = researcher.get("_history?_count=500")
    assert reply.status_code == 200
    types = {key.split("/")[0] for key in _keys(reply.json_body)}
    assert types == {"Patient", "Observation"}
    for secret in SECRETS:
        assert secret not in reply.content.decode(), secret


# --- item 5: old versions are decided on their own content ------------------------------------------


def test_versions_of_a_deleted_patient_stay_redacted(world):
    resource_delete(SYSTEM, resource_type="Patient", fhir_id="ann")
    researcher = _as(world, "Researcher")
    for path in ("Patient/ann/_history/1", "Patient/ann/_history", "Patient/_history", "_history"):
        reply = researcher.get(path)
        assert reply.status_code == 200, (path, reply.content)
        for secret in SECRETS:
            assert secret not in reply.content.decode(), (path, secret)


def test_a_version_is_visible_exactly_to_whoever_may_read_its_content(world):
    ann, bob = _as(world, "Patient", "Patient/ann"), _as(world, "Patient", "Patient/bob")
    assert ann.get("Observation/moved/_history/1").status_code == 200
    assert ann.get("Observation/moved/_history/2").status_code == 404
    assert bob.get("Observation/moved/_history/1").status_code == 404
    assert bob.get("Observation/moved/_history/2").status_code == 200
    assert _keys(ann.get("Observation/moved/_history").json_body) == ["Observation/moved/1"]
    assert _keys(bob.get("Observation/moved/_history").json_body) == ["Observation/moved/2"]
    # A missing version, a missing resource and a hidden version answer alike.
    texts = {
        ann.get(path).content.decode().replace("moved", "X").replace("nothing", "X")
        for path in ("Observation/moved/_history/2", "Observation/nothing/_history/1")
    }
    assert len(texts) == 1


def test_deleted_resource_history_is_decided_per_version(world):
    resource_delete(SYSTEM, resource_type="Observation", fhir_id="moved")
    ann = _as(world, "Patient", "Patient/ann")
    assert _keys(ann.get("Observation/moved/_history").json_body) == ["Observation/moved/1"]
    assert ann.get("Observation/moved/_history/2").status_code == 404
    assert ann.get("Observation/moved/_history/3").status_code == 404  # the deletion itself


# --- item 6: conditional matching is a read -----------------------------------------------------------


def test_conditional_create_answers_the_match_as_a_read(world):
    researcher = _as(world, "Researcher")
    reply = researcher.post(
        "Patient",
        {"resourceType": "Patient", "name": [{"family": "Probe"}]},
        headers={"If-None-Exist": "_id=ann"},
    )
    assert reply.status_code == 200
    text = reply.content.decode()
    assert "Andersson" not in text and "MRN-A" not in text and "1970-05-06" not in text


def test_a_transaction_ifnoneexist_needs_create(world):
    bob = _as(world, "Patient", "Patient/bob")
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {"resourceType": "Encounter", "status": "finished",
                             "class": {"code": "AMB"}, "subject": {"reference": "Patient/bob"}},
                "request": {"method": "POST", "url": "Encounter", "ifNoneExist": "_id=enc-bob"},
            }
        ],
    }  # fmt: skip
    ruleset.replace_rules(ruleset.parse_yaml(RULES.replace("history, create]", "history]")))
    reply = bob.post("", bundle)
    assert reply.status_code == 403, reply.content


# --- item 13: a write's answer is shaped like a read of the result ------------------------------------


def test_write_answers_are_redacted_like_reads(world):
    researcher = _as(world, "Researcher")
    patched = researcher.patch(
        "Patient/ann",
        [{"op": "add", "path": "/active", "value": True}],
        content_type="application/json-patch+json",
        headers={"Prefer": "return=representation"},
    )
    assert patched.status_code == 200, patched.content
    assert patched.json_body["active"] is True
    for secret in SECRETS[:1] + ("MRN-A", "1970-05-06"):
        assert secret not in patched.content.decode(), secret
    patch = base64.b64encode(b'[{"op": "add", "path": "/gender", "value": "female"}]').decode()
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": patch},
                "request": {"method": "PATCH", "url": "Patient/ann"},
            }
        ],
    }  # fmt: skip
    reply = researcher.post("", bundle, headers={"Prefer": "return=representation"})
    assert reply.status_code == 200, reply.content
    assert "Andersson" not in reply.content.decode() and "female" in reply.content.decode()


def test_a_redacted_reader_may_not_write_what_it_cannot_see(world):
    """An outside attack: a role reading Patients with identifiers pseudonymised created a Patient with
    a guessed MRN and read back its pseudonym (a dictionary attack on the pseudonyms); and a PUT of
    the redacted view it had read erased the name and stored the generalised birth date."""
    researcher = _as(world, "Researcher")
    guess = {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "MRN-A"}]}
    assert researcher.post("Patient", guess).status_code == 403
    seen = researcher.get("Patient/ann").json_body
    assert researcher.put("Patient/ann", seen).status_code == 403
    admin = _as(world, "Admin")
    assert admin.get("Patient/ann").json_body["name"] == [{"family": "Andersson"}]
    plain = researcher.post("Patient", {"resourceType": "Patient", "gender": "other"})
    assert plain.status_code == 201  # nothing redacted in it: allowed


# --- the oracle, against the interaction layer directly ----------------------------------------------

PERSONAS = [
    ("Patient", "Patient/ann"),
    ("Patient", "Patient/bob"),
    ("Practitioner", "Practitioner/dr-a"),
    ("Researcher", ""),
]


def _door(interaction, role: str, identity: str, **kwargs):
    """The interaction's answer for this caller, or the status it refused with."""
    try:
        return interaction(AccessContext(role=role, identity=identity or None), **kwargs)
    except FhirError as refusal:
        return refusal.status


def _content(text: str) -> dict:
    import json

    body = json.loads(text)
    return {k: v for k, v in body.items() if k not in ("id", "meta")}


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(subjects=st.lists(st.sampled_from(["ann", "bob"]), min_size=1, max_size=4), delete=st.booleans())
def test_every_version_answers_as_a_read_of_its_content(world, subjects, delete):
    fid = "walk-" + "-".join(subjects) + ("-d" if delete else "")
    for value, subject in enumerate(subjects):
        _put("Observation", fid, **_observation(subject, value))
        _put("Observation", f"{fid}-copy{value + 1}", **_observation(subject, value))
    if delete:
        resource_delete(SYSTEM, resource_type="Observation", fhir_id=fid)
    for role, identity in PERSONAS:
        history = _door(
            door_read.history, role, identity, resource_type="Observation", fhir_id=fid, count=100
        )
        listed = set() if isinstance(history, int) else {e.stored.version for e in history.entries}
        for version in range(1, len(subjects) + 1):
            copy = f"{fid}-copy{version}"
            expected = _door(door_read.read, role, identity, resource_type="Observation", fhir_id=copy)
            got = _door(
                door_read.vread,
                role,
                identity,
                resource_type="Observation",
                fhir_id=fid,
                version=str(version),
            )
            if isinstance(expected, int):
                assert got == 404, (role, identity, version)
                assert version not in listed
            else:
                assert not isinstance(got, int), (role, identity, version, got)
                assert _content(got.body) == _content(expected.body)
                assert version in listed
