"""The rule chain through the REST API: loading rules, the default set, 403 versus 404, search
narrowing, property filters, blocked parameters, write checks and explain."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from authz import ruleset
from authz.models import ApiToken, Rule
from conftest import Fhir, bearer

pytestmark = pytest.mark.django_db

RULES = """
rules:
  - {name: admin-all, role: Admin, resource: "*", operation: "*", validator: Allowed}
  - name: patient-own-data
    role: Patient
    resource: [Observation, Condition, Patient, Encounter]
    operation: [read, vread, search, history, create, update]
    validator: PatientCompartment
  - name: research-anonymised
    role: Researcher
    resource: Patient
    operation: [read, search, history]
    validator: Allowed
    property-filters:
      - {path: name, action: remove}
      - {path: telecom, action: remove}
      - {path: birthDate, action: generalize-year}
      - {path: identifier, action: pseudonymize}
    blocked-search-params: [address]
    blocked-includes: ["Patient:general-practitioner"]
"""


@pytest.fixture(autouse=True)
def _fresh_rule_cache():
    """The compiled rules are cached per rule-set version; each test's rolled-back database reuses
    version numbers, so a rule set one test loaded must not answer for another's."""
    from authz.rules import forget_rules

    forget_rules()
    yield
    forget_rules()


@pytest.fixture
def world(fhir):
    ruleset.replace_rules(ruleset.parse_yaml(RULES))
    for pid, family, mrn in (("ann", "Andersson", "MRN-A"), ("bob", "Berg", "MRN-B")):
        fhir.put(
            f"Patient/{pid}",
            {
                "resourceType": "Patient",
                "id": pid,
                "name": [{"family": family}],
                "birthDate": "1970-05-06",
                "telecom": [{"system": "phone", "value": "+46-555-0100"}],
                "identifier": [{"system": "urn:mrn", "value": mrn}],
            },
        )
        fhir.put(
            f"Observation/{pid}-pulse",
            {
                "resourceType": "Observation",
                "id": f"{pid}-pulse",
                "status": "final",
                "code": {"text": "pulse"},
                "subject": {"reference": f"Patient/{pid}"},
                "valueQuantity": {"value": 60 if pid == "ann" else 120},
            },
        )
    return fhir


def _as(fhir: Fhir, role: str, identity: str = "") -> Fhir:
    client = type(fhir.client)()
    client.defaults["HTTP_AUTHORIZATION"] = bearer(role, identity)
    return Fhir(client)


def _ids(bundle: dict) -> set[str]:
    return {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle.get("entry", [])}


def test_patient_reads_own_and_gets_404_for_others(world):
    ann = _as(world, "Patient", "Patient/ann")
    assert ann.get("Patient/ann").status_code == 200
    assert ann.get("Observation/ann-pulse").status_code == 200
    other, missing = ann.get("Patient/bob"), ann.get("Patient/nobody")
    assert other.status_code == missing.status_code == 404
    assert other.json_body["issue"][0]["diagnostics"].replace("bob", "X") == missing.json_body["issue"][0][
        "diagnostics"
    ].replace("nobody", "X")
    # a type no rule grants is refused outright
    assert ann.get("Practitioner").status_code == 403


def test_patient_search_is_narrowed_in_every_part(world):
    ann = _as(world, "Patient", "Patient/ann")
    assert _ids(ann.get("Observation").json_body) == {"Observation/ann-pulse"}
    assert _ids(ann.get("Observation?subject=Patient/bob").json_body) == set()
    assert _ids(ann.get("Observation?value-quantity=gt100").json_body) == set()
    assert _ids(ann.get("Patient?_has:Observation:patient:value-quantity=gt100").json_body) == set()
    assert _ids(ann.get("Observation?subject:Patient.name=Berg").json_body) == set()
    included = ann.get("Observation?_include=Observation:subject").json_body
    assert _ids(included) == {"Observation/ann-pulse", "Patient/ann"}
    assert ann.get("Observation?_summary=count").json_body["total"] == 1
    history = ann.get("Observation/_history").json_body
    assert {e["request"]["url"].split("/_history")[0] for e in history["entry"]} <= {"Observation/ann-pulse"}


def test_patient_writes_are_checked_before_and_after(world):
    ann = _as(world, "Patient", "Patient/ann")
    for_bob = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": "Patient/bob"},
    }
    assert ann.post("Observation", for_bob).status_code == 403
    moved = {**for_bob, "id": "ann-pulse"}
    assert ann.put("Observation/ann-pulse", moved).status_code == 403
    assert world.get("Observation/ann-pulse").json_body["subject"]["reference"] == "Patient/ann"
    # An existing resource the caller may not read answers exactly like an id that does not exist.
    hidden = ann.put("Observation/bob-pulse", {**for_bob, "id": "bob-pulse"})
    missing = ann.put("Observation/no-such-pulse", {**for_bob, "id": "no-such-pulse"})
    assert hidden.status_code == missing.status_code == 403
    diagnostics = [r.json_body["issue"][0]["diagnostics"] for r in (hidden, missing)]
    assert diagnostics[0] == diagnostics[1]
    own = {**for_bob, "subject": {"reference": "Patient/ann"}}
    assert ann.post("Observation", own).status_code == 201


def test_researcher_sees_redacted_patients_and_cannot_query_redacted_fields(world):
    researcher = _as(world, "Researcher")
    body = researcher.get("Patient/ann").content.decode()
    for secret in ("Andersson", "555-0100", "MRN-A", "1970-05-06"):
        assert secret not in body
    patient = researcher.get("Patient/ann").json_body
    assert patient["birthDate"] == "1970" and "name" not in patient
    assert patient["identifier"][0]["system"] == "urn:mrn"
    listed = researcher.get("Patient").content.decode()
    assert "Andersson" not in listed and "MRN-B" not in listed
    for query in (
        "Patient?name=Andersson",
        "Patient?birthdate=1970",
        "Patient?address=x",
        "Patient?_sort=name",
    ):
        refused = researcher.get(query)
        assert refused.status_code == 403, query
    assert researcher.get("Patient?_include=Patient:general-practitioner").status_code == 403
    assert researcher.get("Observation").status_code == 403


def test_public_and_unknown_roles(world):
    from django.test import Client

    assert Client().get("/fhir/Patient").status_code == 401
    assert _as(world, "Nurse").get("Patient").status_code == 403


def test_load_rules_is_all_or_nothing(world, tmp_path):
    before = list(Rule.objects.values_list("name", flat=True))
    bad = tmp_path / "rules.yaml"
    cases = {
        "unknown validator": "- {name: x, role: A, resource: Patient, operation: read, validator: Nope}",
        "unknown operation": "- {name: x, role: A, resource: Patient, operation: peek, validator: Allowed}",
        "unknown resource type": "- {name: x, role: A, resource: Patientt, operation: read, validator: Allowed}",
        "FHIRPath": "- {name: x, role: A, resource: Patient, operation: read, validator: Allowed, identity-filter: 'name.('}",
        "search parameter": "- {name: x, role: A, resource: Patient, operation: read, validator: Allowed, blocked-search-params: [colour]}",
    }
    for problem, rule in cases.items():
        bad.write_text(
            "rules:\n  - {name: ok, role: Admin, resource: '*', operation: '*', validator: Allowed}\n  "
            + rule
        )
        with pytest.raises(CommandError) as raised:
            call_command("load_rules", str(bad), stdout=StringIO())
        assert raised.value.returncode == 2
        assert "Rule 'x'" in str(raised.value), problem
        assert list(Rule.objects.values_list("name", flat=True)) == before


def test_dump_and_load_round_trip(world, tmp_path):
    out = StringIO()
    call_command("dump_rules", stdout=out)
    path = tmp_path / "dumped.yaml"
    path.write_text(out.getvalue())
    call_command("load_rules", str(path), stdout=StringIO())
    again = StringIO()
    call_command("dump_rules", stdout=again)
    assert again.getvalue() == out.getvalue()
    assert "research-anonymised" in out.getvalue()


def test_explain_header_and_command(world, settings):
    settings.FHIR_EXPLAIN = True
    response = world.get(
        "Observation/bob-pulse",
        headers={"X-Explain": "true", "X-Explain-Role": "Patient", "X-Explain-Identity": "Patient/ann"},
    )
    text = " ".join(i["diagnostics"] for i in response.json_body["issue"])
    assert "patient-own-data" in text and "does not allow" in text and "404" in text
    out = StringIO()
    call_command(
        "explain",
        "Observation/ann-pulse",
        role="Patient",
        identity="Patient/ann",
        operation="read",
        stdout=out,
    )
    assert "allowed by rule 'patient-own-data'" in out.getvalue()
    # not for other roles: their request just runs
    ann = _as(world, "Patient", "Patient/ann")
    assert (
        ann.get("Observation/ann-pulse", headers={"X-Explain": "true"}).json_body["resourceType"]
        == "Observation"
    )


CLINICIAN_STAR = """
rules:
  - {name: clinicians, role: Practitioner, resource: "*", operation: "*", validator: Allowed}
  - {name: enrolment-desk, role: Enrolment, resource: Patient, operation: ["*", generate-token], validator: Allowed}
"""


def test_star_does_not_include_generate_token(fhir):
    """Issue 10, item 12: a clinician rule with `operation: "*"` let a Practitioner mint a token
    impersonating a colleague. `*` covers the data operations; generate-token must be named."""
    for reference in ("Practitioner/colleague", "Practitioner/me", "Patient/pat"):
        resource_type, fhir_id = reference.split("/")
        assert fhir.put(reference, {"resourceType": resource_type, "id": fhir_id}).status_code == 201
    ruleset.replace_rules(ruleset.parse_yaml(CLINICIAN_STAR))
    clinician = _as(fhir, "Practitioner", "Practitioner/me")
    assert clinician.get("Practitioner/colleague").status_code == 200  # `*` still reads
    refused = clinician.post("Practitioner/colleague/$api-token", "")
    assert refused.status_code == 403, refused.content
    assert ApiToken.objects.filter(identity="Practitioner/colleague").count() == 0
    # a rule that names generate-token beside `*` grants it (and `*` still grants the rest)
    desk = _as(fhir, "Enrolment")
    assert desk.post("Patient/pat/$api-token", "").status_code == 201
    assert desk.get("Patient/pat").status_code == 200


def test_star_means_the_data_operations():
    from authz.rules import DATA_OPERATIONS, EXPLICIT_OPERATIONS, OPERATIONS

    rule = ruleset.compile_rule(
        1, {"name": "r", "role": "A", "resource": "*", "operation": "*", "validator": "Allowed"}
    )
    assert rule.operations == DATA_OPERATIONS
    assert {"generate-token", "materialize"} == EXPLICIT_OPERATIONS == set(OPERATIONS) - DATA_OPERATIONS
    for operation in OPERATIONS:
        assert rule.covers("A", operation, "Patient") is (operation not in EXPLICIT_OPERATIONS)
    named = ruleset.compile_rule(
        1,
        {
            "name": "r",
            "role": "A",
            "resource": "*",
            "operation": ["*", "materialize"],
            "validator": "Allowed",
        },
    )
    assert named.covers("A", "materialize", "CarePlan") and not named.covers("A", "generate-token", "Patient")


def test_default_admin_rule_names_the_non_data_operations(fhir):
    default = ruleset.compiled_default()[0]
    assert default.name == "admin-all"
    assert default.covers("Admin", "generate-token", "Patient")
    assert default.covers("Admin", "materialize", "CarePlan")
    out = StringIO()
    call_command("dump_rules", stdout=out)
    assert "generate-token" in out.getvalue() and "materialize" in out.getvalue()


def test_migration_upgrades_the_stored_default_rule(fhir):
    """A database migrated before the change holds admin-all with `*` (migration 0003); the upgrade
    names the non-data operations on it so the operator keeps $api-token, and moves the version."""
    import importlib

    from django.apps import apps

    from authz.models import RuleSetVersion

    Rule.objects.all().delete()
    Rule.objects.create(
        position=1, name="admin-all", role="Admin", resources=["*"], operations=["*"], validator="Allowed"
    )
    Rule.objects.create(
        position=2, name="other", role="Practitioner", resources=["*"], operations=["*"], validator="Allowed"
    )
    RuleSetVersion.objects.all().delete()
    RuleSetVersion.objects.create(version=7)
    migration = importlib.import_module("authz.migrations.0005_default_rule_names_non_data_operations")
    migration.name_operations(apps, None)
    assert Rule.objects.get(name="admin-all").operations == ["*", "generate-token", "materialize"]
    assert Rule.objects.get(name="other").operations == ["*"]
    assert RuleSetVersion.objects.get().version == 8


def test_refusals_do_not_name_rules_or_validators(world):
    """Issue 10, item 12: 403 texts named the rule and its validator, telling a client how the access
    policy is built. They say what was refused; the rule's name stays for the audit and explain."""
    from authz import rules
    from authz.context import AccessContext

    ruleset.replace_rules(
        ruleset.parse_yaml(
            RULES
            + """
  - {name: secret-audit-policy, role: Auditor, resource: AuditEvent, operation: [search], validator: PatientCompartment}
"""
        )
    )
    researcher = _as(world, "Researcher")
    refusals = [
        researcher.get("Patient?name=Andersson"),
        researcher.get("Patient?address=x"),
        researcher.get("Patient?_include=Patient:general-practitioner"),
    ]
    for response in refusals:
        assert response.status_code == 403, response.content
        text = response.content.decode()
        assert response.json_body["resourceType"] == "OperationOutcome"
        for secret in ("research-anonymised", "secret-audit-policy", "rule", "Allowed", "PatientCompartment"):
            assert secret not in text, (secret, text)
    # the refusal still knows the rule, for the audit row
    ctx = AccessContext(role="Researcher")
    blocked = rules.blocked_params(ctx, "search", "Patient")["name"]
    failure = rules.refuse_param("name", "Patient", blocked)
    assert "research-anonymised" in failure.reason
    assert "research-anonymised" not in failure.issues[0].diagnostics
