"""Write checks against the leak-suite world (tests/personas.py), one test per reproduced attack:

- no write widens its writer's own access (a PractitionerRole in another organisation, Patient.link
  to a stranger, a RelatedPerson re-pointed, a care team re-aimed, an organisation moved under one's
  own, an identity filter switched on by editing one's own identity), unless the authorising rule
  says `may-widen-access: true`; a transaction is judged as a whole;
- no write places data in a Patient compartment its writer may not write to (an Observation about
  another patient with the caller as performer), while a message to one's GP stays allowed;
- a deleted resource is judged on its last version (re-creating another organisation's Patient);
- forbidden and missing ids answer alike for PUT, PATCH and DELETE;
- a patch cannot observe what the caller's read redacts.

Over HTTP, as each persona, with the world built once per module (as in tests/test_leaks.py) and every
test in its own savepoint.
"""

from __future__ import annotations

import base64
import json

import pytest
from django.db import transaction

from authz import rules, ruleset
from authz.context import AccessContext
from resources.services import resource_delete, resource_update
from tests.personas import RULES_YAML, Caller, Reply, build_world, callers

pytestmark = pytest.mark.django_db

# The leak suite's rules, plus write rules that give each route into widening a way in.
EXTRA_RULES = """
rules:
  - {name: patient-self, role: Patient, resource: [Patient, RelatedPerson], operation: [create, update], validator: PatientCompartment}
  - {name: patient-message, role: Patient, resource: [Communication], operation: [create, read], validator: PatientCompartment}
  - {name: patient-org, role: Patient, resource: [Organization, PractitionerRole, Practitioner], operation: [read, search], validator: LegitimateInterest}
  - {name: clinician-gp, role: Practitioner, resource: "*", operation: [read, search], validator: GeneralPractitioner, identity-filter: "Practitioner.active = true"}
  - {name: clinician-team-edit, role: Practitioner, resource: [CareTeam], operation: [update], validator: CareTeam}
  - {name: clinician-directory, role: Practitioner, resource: [Organization], operation: [read, update], validator: Allowed}
  - {name: practitioner-self, role: Practitioner, resource: [Practitioner], operation: [read, update], validator: PractitionerCompartment}
  - {name: clinician-remove, role: Practitioner, resource: [Observation], operation: [delete, patch], validator: {LegitimateInterest: {inherit: true}}}
  - {name: relative-self, role: RelatedPerson, resource: [RelatedPerson], operation: [update], validator: RelatedPersonCompartment}
  - {name: research-patch, role: Researcher, resource: [Patient], operation: [patch], validator: Allowed}
  - {name: clinician-bundles, role: Practitioner, resource: [Bundle], operation: [transaction], validator: Allowed}
"""


def write_rules(*extra: dict) -> list[dict]:
    return [*ruleset.parse_yaml(RULES_YAML), *ruleset.parse_yaml(EXTRA_RULES), *extra]


def load(raw: list[dict]) -> None:
    ruleset.replace_rules(raw)
    rules.forget_rules()  # a test database never commits, so on_commit never forgets them


@pytest.fixture(scope="module")
def people(django_db_setup, django_db_blocker) -> dict[str, Caller]:
    with django_db_blocker.unblock():
        atomic = transaction.atomic()
        atomic.__enter__()
        try:
            build_world()
            add_stranger()
            load(write_rules())
            by_name = callers()
        except BaseException:
            transaction.set_rollback(True)
            atomic.__exit__(None, None, None)
            raise
    yield by_name
    with django_db_blocker.unblock():
        transaction.set_rollback(True)
        atomic.__exit__(None, None, None)
        rules.forget_rules()


def ref(reference: str) -> dict:
    return {"reference": reference}


def add_stranger() -> None:
    """A patient no organisation manages and nobody's care team or link reaches, with a result; and
    data that names resources which do not exist yet (a Patient `ghost`, an Organization `org-ghost`
    with a role and a patient of its own), for writers who would create them to reach that data."""
    system = AccessContext.system("write-guard world")

    def put(resource_type: str, fhir_id: str, **body) -> None:
        resource_update(
            system,
            resource_type=resource_type,
            fhir_id=fhir_id,
            body={"resourceType": resource_type, "id": fhir_id, **body},
        )

    put("Patient", "pz", name=[{"family": "Zephyrine"}])
    put("Observation", "obs-pz", status="final", code={"text": "pulse"}, subject=ref("Patient/pz"))
    put("Observation", "obs-ghost", status="final", code={"text": "pulse"}, subject=ref("Patient/ghost"))
    put("Patient", "pg", name=[{"family": "Ghostly"}], managingOrganization=ref("Organization/org-ghost"))
    put(
        "PractitionerRole",
        "role-ghost",
        practitioner=ref("Practitioner/dr-b"),
        organization=ref("Organization/org-ghost"),
    )


def status(reply: Reply) -> int:
    return reply.status


def diagnostics(reply: Reply) -> str:
    return reply.json["issue"][0]["diagnostics"]


def admin_body(people, key: str) -> dict:
    body = people["admin"].get(key).json
    body.pop("meta", None)
    return body


def patch(caller: Caller, path: str, body, content_type: str = "application/json-patch+json") -> Reply:
    response = caller.client.patch(
        "/fhir/" + path, json.dumps(body), content_type=content_type, headers=caller.headers
    )
    return Reply(response.status_code, response.content.decode(), dict(response.headers))


def delete(caller: Caller, path: str) -> Reply:
    response = caller.client.delete("/fhir/" + path, headers=caller.headers)
    return Reply(response.status_code, response.content.decode(), dict(response.headers))


# --- item 2: no write widens its writer's own access ----------------------------------------------


def test_a_practitioner_cannot_give_itself_a_role_in_another_organisation(people):
    dr_a = people["dr-a"]
    assert dr_a.get("Patient/pb1").status == 200  # through its care team: pb1 itself is visible
    role = {
        "resourceType": "PractitionerRole",
        "active": True,
        "practitioner": ref("Practitioner/dr-a"),
        "organization": ref("Organization/org-b"),
    }
    reply = dr_a.send("post", "PractitionerRole", role)
    assert reply.status == 403, reply.text
    assert people["admin"].get("PractitionerRole?practitioner=dr-a&organization=org-b").json["total"] == 0
    # org-b's directory and its other patients stay out of reach.
    assert dr_a.get("Practitioner/dr-b").status == 404
    assert dr_a.get("Organization/org-b").status == 200  # the directory rule shows every organisation
    assert dr_a.get("Encounter/enc-pb1").status == 200  # care team: unchanged


def test_a_practitioner_cannot_create_a_patient_that_others_data_already_names(people):
    dr_a = people["dr-a"]
    assert dr_a.get("Observation/obs-ghost").status == 404
    ghost = {"resourceType": "Patient", "id": "ghost", "managingOrganization": ref("Organization/org-a")}
    assert dr_a.send("put", "Patient/ghost", ghost).status == 403
    assert dr_a.get("Observation/obs-ghost").status == 404
    # A Patient that nothing names yet is its to create, with a client id or without.
    fresh = {"resourceType": "Patient", "id": "fresh", "managingOrganization": ref("Organization/org-a")}
    assert dr_a.send("put", "Patient/fresh", fresh).status == 201
    del fresh["id"]
    assert dr_a.send("post", "Patient", fresh).status == 201


def test_a_practitioner_cannot_create_an_organisation_that_others_data_already_names(people):
    dr_a = people["dr-a"]
    assert dr_a.get("Patient/pg").status == 404
    org = {"resourceType": "Organization", "id": "org-ghost", "partOf": ref("Organization/org-a")}
    assert dr_a.send("put", "Organization/org-ghost", org).status == 403
    assert dr_a.get("Patient/pg").status == 404
    fresh = {"resourceType": "Organization", "id": "org-fresh", "partOf": ref("Organization/org-a")}
    assert dr_a.send("put", "Organization/org-fresh", fresh).status == 201


def test_a_practitioner_cannot_widen_through_a_transaction(people):
    dr_a = people["dr-a"]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {
                    "resourceType": "PractitionerRole",
                    "practitioner": ref("Practitioner/dr-a"),
                    "organization": ref("Organization/org-b"),
                },
                "request": {"method": "POST", "url": "PractitionerRole"},
            },
            {
                "resource": {"resourceType": "Practitioner", "id": "dr-a", "active": True},
                "request": {"method": "PUT", "url": "Practitioner/dr-a"},
            },
        ],
    }
    reply = dr_a.send("post", "", bundle)
    assert reply.status == 403, reply.text
    assert people["admin"].get("PractitionerRole?practitioner=dr-a").json["total"] == 1
    assert people["admin"].get("Practitioner/dr-a").json["name"]  # the PUT was rolled back too


def test_a_batch_judges_each_entry_on_its_own(people):
    dr_a = people["dr-a"]
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {
                "resource": {
                    "resourceType": "PractitionerRole",
                    "practitioner": ref("Practitioner/dr-a"),
                    "organization": ref("Organization/org-b"),
                },
                "request": {"method": "POST", "url": "PractitionerRole"},
            },
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "pulse"},
                    "subject": ref("Patient/pa1"),
                },
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    reply = dr_a.send("post", "", bundle)
    assert reply.status == 200, reply.text
    assert [e["response"]["status"][:3] for e in reply.json["entry"]] == ["403", "201"]
    assert dr_a.get("Practitioner/dr-b").status == 404


def test_a_transaction_may_build_a_new_organisation_of_its_own(people):
    """New grants that reach only what the same transaction wrote widen nothing."""
    dr_a = people["dr-a"]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:0c3f4c52-7a86-4d8e-9e25-51b0a4f8f001",
                "resource": {"resourceType": "Organization", "name": "New ward"},
                "request": {"method": "POST", "url": "Organization"},
            },
            {
                "resource": {
                    "resourceType": "PractitionerRole",
                    "practitioner": ref("Practitioner/dr-a"),
                    "organization": ref("urn:uuid:0c3f4c52-7a86-4d8e-9e25-51b0a4f8f001"),
                },
                "request": {"method": "POST", "url": "PractitionerRole"},
            },
            {
                "resource": {
                    "resourceType": "Patient",
                    "managingOrganization": ref("urn:uuid:0c3f4c52-7a86-4d8e-9e25-51b0a4f8f001"),
                },
                "request": {"method": "POST", "url": "Patient"},
            },
        ],
    }
    reply = dr_a.send("post", "", bundle)
    assert reply.status == 200, reply.text
    assert [e["response"]["status"][:3] for e in reply.json["entry"]] == ["201", "201", "201"]


def test_a_patient_cannot_link_itself_to_a_stranger(people):
    pa2 = people["pa2"]
    assert pa2.get("Patient/pb1").status == 404
    body = admin_body(people, "Patient/pa2")
    body["link"] = [{"other": ref("Patient/pb1"), "type": "seealso"}]
    reply = pa2.send("put", "Patient/pa2", body)
    assert reply.status == 403, reply.text
    assert "link" not in admin_body(people, "Patient/pa2")
    assert pa2.get("Patient/pb1").status == 404
    assert pa2.get("Observation/obs-pb1-hr").status == 404
    # Its own record stays its to change.
    body = admin_body(people, "Patient/pa2")
    body["gender"] = "other"
    assert pa2.send("put", "Patient/pa2", body).status == 200


def test_a_patient_cannot_move_itself_to_another_organisation(people):
    pa2 = people["pa2"]
    assert pa2.get("Organization/org-b").status == 404
    body = admin_body(people, "Patient/pa2")
    body["managingOrganization"] = ref("Organization/org-b")
    assert pa2.send("put", "Patient/pa2", body).status == 403
    assert pa2.get("Organization/org-b").status == 404
    assert pa2.get("Practitioner/dr-b").status == 404


def test_a_relative_cannot_repoint_itself_to_another_patient(people):
    relative = people["rp-pa1"]
    body = admin_body(people, "RelatedPerson/rp-pa1")
    body["patient"] = ref("Patient/pb1")
    assert relative.send("put", "RelatedPerson/rp-pa1", body).status == 403
    assert relative.get("Patient/pb1").status == 404
    assert relative.get("Patient/pa1").status == 200


def test_a_care_team_member_cannot_reaim_its_team(people):
    dr_a = people["dr-a"]
    assert dr_a.get("Patient/pz").status == 404
    team = admin_body(people, "CareTeam/ct-pb1")
    team["subject"] = ref("Patient/pz")
    assert dr_a.send("put", "CareTeam/ct-pb1", team).status == 403
    assert dr_a.get("Patient/pz").status == 404
    assert dr_a.get("Observation/obs-pz").status == 404


def test_a_practitioner_cannot_move_another_organisation_under_its_own(people):
    dr_a = people["dr-a"]
    assert dr_a.get("Patient/pb1").status == 200  # (care team)
    assert dr_a.get("MedicationRequest/mr-pb1").status == 200
    assert dr_a.get("Practitioner/dr-b").status == 404
    org = admin_body(people, "Organization/org-b")
    org["partOf"] = ref("Organization/org-a")
    assert dr_a.send("put", "Organization/org-b", org).status == 403
    assert dr_a.get("Practitioner/dr-b").status == 404
    # A change that widens nothing is accepted.
    org = admin_body(people, "Organization/org-b")
    org["name"] = "Brookfield Clinic (renamed)"
    assert dr_a.send("put", "Organization/org-b", org).status == 200


def test_an_inactive_practitioner_cannot_switch_its_identity_filter_on(people):
    idle = people["dr-inactive"]
    assert idle.get("Patient/pa1").status == 403  # no rule of its passes for Patient
    body = admin_body(people, "Practitioner/dr-inactive")
    body["active"] = True
    assert idle.send("put", "Practitioner/dr-inactive", body).status == 403
    assert idle.get("Patient/pa1").status == 403
    # The same edit of an active practitioner's own record changes no grant.
    body = admin_body(people, "Practitioner/dr-a")
    body["name"][0]["given"] = ["Mina"]
    assert people["dr-a"].send("put", "Practitioner/dr-a", body).status == 200


def test_a_rule_may_allow_widening_explicitly(people):
    onboarding = {
        "name": "staff-onboarding",
        "role": "Practitioner",
        "resource": ["PractitionerRole"],
        "operation": ["create"],
        "validator": "Allowed",
        "may-widen-access": True,
    }
    load([onboarding, *write_rules()])
    assert "may-widen-access: true" in ruleset.dump_yaml()
    dr_a = people["dr-a"]
    role = {
        "resourceType": "PractitionerRole",
        "practitioner": ref("Practitioner/dr-a"),
        "organization": ref("Organization/org-b"),
    }
    assert dr_a.send("post", "PractitionerRole", role).status == 201
    assert dr_a.get("Practitioner/dr-b").status == 200
    load(write_rules())


def test_may_widen_access_must_be_a_boolean():
    with pytest.raises(ruleset.RuleError, match="may-widen-access"):
        ruleset.compile_all(
            [
                {
                    "name": "x",
                    "role": "Admin",
                    "resource": "*",
                    "operation": "*",
                    "validator": "Allowed",
                    "may-widen-access": "yes",
                }
            ]
        )


# --- item 3: no data planted in another patient's compartment -------------------------------------


def test_a_patient_cannot_plant_an_observation_in_another_patients_record(people):
    pa1 = people["pa1"]
    planted = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "planted"},
        "subject": ref("Patient/pb1"),
        "performer": [ref("Patient/pa1")],
    }
    before = people["admin"].get("Observation?subject=pb1&_summary=count").json["total"]
    reply = pa1.send("post", "Observation", planted)
    assert reply.status == 403, reply.text
    assert people["admin"].get("Observation?subject=pb1&_summary=count").json["total"] == before
    # About itself, with itself as performer: its own record.
    planted["subject"] = ref("Patient/pa1")
    assert pa1.send("post", "Observation", planted).status == 201


def test_a_patient_may_message_its_gp(people):
    message = {
        "resourceType": "Communication",
        "status": "completed",
        "subject": ref("Patient/pa2"),
        "sender": ref("Patient/pa2"),
        "recipient": [ref("Practitioner/dr-b")],
        "payload": [{"contentString": "Could I have a repeat prescription?"}],
    }
    assert people["pa2"].send("post", "Communication", message).status == 201


def test_a_practitioner_cannot_plant_data_outside_its_organisations(people):
    dr_a1 = people["dr-a1"]
    planted = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "planted"},
        "subject": ref("Patient/pa3"),
        "performer": [ref("Practitioner/dr-a1")],
    }
    assert dr_a1.send("post", "Observation", planted).status == 201  # pa3 is its organisation's
    # The subject is its own patient, but a performer puts it in pb1's record as well.
    planted["performer"] = [ref("Patient/pb1")]
    assert dr_a1.send("post", "Observation", planted).status == 403


# --- item 4: a deleted resource is judged on its last version --------------------------------------


def test_a_deleted_patient_of_another_organisation_cannot_be_recreated(people):
    resource_delete(AccessContext.system("test: delete pb1"), resource_type="Patient", fhir_id="pb1")
    dr_a1 = people["dr-a1"]
    taken = {"resourceType": "Patient", "id": "pb1", "managingOrganization": ref("Organization/org-a1")}
    reply = dr_a1.send("put", "Patient/pb1", taken)
    assert reply.status == 403, reply.text
    assert dr_a1.get("Patient/pb1/_history/1").status == 404
    assert dr_a1.get("Observation/obs-pb1-hr").status == 404
    assert people["admin"].get("Patient/pb1").status == 410  # still deleted


def test_a_deleted_resource_of_ones_own_organisation_can_be_recreated(people):
    system = AccessContext.system("test: delete")
    resource_delete(system, resource_type="Observation", fhir_id="obs-pa3-bw")
    back = {
        "resourceType": "Observation",
        "id": "obs-pa3-bw",
        "status": "final",
        "code": {"text": "weight"},
        "subject": ref("Patient/pa3"),
    }
    assert people["dr-a1"].send("put", "Observation/obs-pa3-bw", back).status == 201
    # Re-creating a deleted Patient brings its whole record (still naming it) back into view: that
    # widens the writer's access, so it needs a rule that allows widening.
    resource_delete(system, resource_type="Patient", fhir_id="pa3")
    patient = {"resourceType": "Patient", "id": "pa3", "managingOrganization": ref("Organization/org-a1")}
    assert people["dr-a1"].send("put", "Patient/pa3", patient).status == 403
    assert people["dr-a1"].get("Observation/obs-pa3-hr").status == 404


# --- item 9: forbidden and missing ids answer alike -------------------------------------------------


def _same(a: Reply, b: Reply) -> None:
    assert a.status == b.status, (a.text, b.text)
    hidden, missing = diagnostics(a), diagnostics(b)
    assert hidden.replace("obs-pb1-bw", "ID") == missing.replace("obs-nowhere", "ID")


def test_put_patch_delete_on_a_forbidden_id_answer_like_a_missing_one(people):
    dr_a1 = people["dr-a1"]

    def body(fhir_id: str) -> dict:
        return {
            "resourceType": "Observation",
            "id": fhir_id,
            "status": "final",
            "code": {"text": "x"},
            "subject": ref("Patient/pb1"),
        }

    _same(
        dr_a1.send("put", "Observation/obs-pb1-bw", body("obs-pb1-bw")),
        dr_a1.send("put", "Observation/obs-nowhere", body("obs-nowhere")),
    )
    assert dr_a1.send("put", "Observation/obs-nowhere", body("obs-nowhere")).status == 403
    if_match = {"If-Match": 'W/"1"'}
    _same(
        dr_a1.send("put", "Observation/obs-pb1-bw", body("obs-pb1-bw"), if_match),
        dr_a1.send("put", "Observation/obs-nowhere", body("obs-nowhere"), if_match),
    )
    edit = [{"op": "replace", "path": "/status", "value": "amended"}]
    _same(patch(dr_a1, "Observation/obs-pb1-bw", edit), patch(dr_a1, "Observation/obs-nowhere", edit))
    assert patch(dr_a1, "Observation/obs-pb1-bw", edit).status == 404
    _same(delete(dr_a1, "Observation/obs-pb1-bw"), delete(dr_a1, "Observation/obs-nowhere"))
    assert delete(dr_a1, "Observation/obs-pb1-bw").status == 404
    assert people["admin"].get("Observation/obs-pb1-bw").status == 200
    # A deleted resource is no different to a caller that could not see the whole type.
    resource_delete(AccessContext.system("test"), resource_type="Observation", fhir_id="obs-pb1-hr")
    assert delete(dr_a1, "Observation/obs-pb1-hr").status == 404
    assert patch(dr_a1, "Observation/obs-pb1-hr", edit).status == 404
    # What the caller may change still works, and deleting twice is idempotent for it.
    assert delete(dr_a1, "Observation/obs-pa3-bw").status == 200
    assert delete(dr_a1, "Observation/obs-pa3-bw").status == 200
    assert patch(dr_a1, "Observation/obs-pa3-bw", edit).status == 410


# --- item 13: a patch cannot observe redacted values -------------------------------------------------


def test_a_json_patch_cannot_test_a_redacted_value(people):
    researcher = people["researcher"]
    right = [{"op": "test", "path": "/birthDate", "value": "1961-04-17"}]
    wrong = [{"op": "test", "path": "/birthDate", "value": "1900-01-01"}]
    a, b = patch(researcher, "Patient/pa1", right), patch(researcher, "Patient/pa1", wrong)
    assert a.status == b.status == 403, (a.text, b.text)
    assert diagnostics(a) == diagnostics(b)
    for path in ("/name/0/family", "/identifier", "/text/div", "", "/_birthDate"):
        assert patch(researcher, "Patient/pa1", [{"op": "test", "path": path, "value": "x"}]).status == 403
    copy = [{"op": "copy", "from": "/name", "path": "/contact/0/name"}]
    assert patch(researcher, "Patient/pa1", copy).status == 403
    # What the researcher sees in clear may be tested and changed.
    ok = [
        {"op": "test", "path": "/gender", "value": "female"},
        {"op": "replace", "path": "/active", "value": False},
    ]
    assert patch(researcher, "Patient/pa1", ok).status == 200


def test_a_caller_that_may_patch_but_not_read_cannot_probe(people):
    from conftest import bearer
    from tests.personas import Persona

    scribe_rule = {
        "name": "scribe",
        "role": "Scribe",
        "resource": ["Condition"],
        "operation": ["patch"],
        "validator": "Allowed",
    }
    load([*write_rules(), scribe_rule])
    scribe = Caller(Persona("scribe", "Scribe"), bearer("Scribe"))
    assert scribe.get("Condition/cond-pa1").status == 403
    right = [{"op": "test", "path": "/code/coding/0/code", "value": "44054006"}]
    wrong = [{"op": "test", "path": "/code/coding/0/code", "value": "0"}]
    a, b = patch(scribe, "Condition/cond-pa1", right), patch(scribe, "Condition/cond-pa1", wrong)
    assert a.status == b.status == 403 and diagnostics(a) == diagnostics(b)
    load(write_rules())


def test_a_fhirpath_patch_cannot_probe_a_redacted_value(people):
    researcher = people["researcher"]
    probe = {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "operation",
                "part": [
                    {"name": "type", "valueCode": "delete"},
                    {"name": "path", "valueString": "Patient.name.where(family = 'Quenby')"},
                ],
            }
        ],
    }
    a = patch(researcher, "Patient/pa1", probe, content_type="application/fhir+json")
    probe["parameter"][0]["part"][1]["valueString"] = "Patient.name.where(family = 'Nobody')"
    b = patch(researcher, "Patient/pa1", probe, content_type="application/fhir+json")
    assert a.status == b.status == 403 and diagnostics(a) == diagnostics(b)


def test_a_binary_patch_in_a_transaction_is_checked_too(people):
    researcher = people["researcher"]
    data = base64.b64encode(
        json.dumps([{"op": "test", "path": "/birthDate", "value": "1961-04-17"}]).encode()
    )
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {
                "resource": {
                    "resourceType": "Binary",
                    "contentType": "application/json-patch+json",
                    "data": data.decode(),
                },
                "request": {"method": "PATCH", "url": "Patient/pa1"},
            }
        ],
    }
    reply = researcher.send("post", "", bundle)
    # The batch itself may be refused for the role, or the entry: never a 200 entry.
    if reply.status == 200:
        assert reply.json["entry"][0]["response"]["status"].startswith("403")
    else:
        assert reply.status == 403
