"""AuditEvent over REST (audit/api.py): search by date, agent, entity, patient, outcome, subtype and
action, keyset paging, read, server entries read-only, who may read the log, and refusals of bad input
(https://hl7.org/fhir/R4/auditevent.html#search, https://hl7.org/fhir/R4/search.html)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlsplit

import pytest

from audit import export
from audit.models import AuditEntry
from authz import rules, ruleset
from conftest import Fhir, bearer
from resources.validation import validate_resource

pytestmark = pytest.mark.django_db

COMPLIANCE_RULES = """
rules:
  - {name: admin-all, role: Admin, resource: "*", operation: "*", validator: Allowed}
  - {name: compliance, role: Compliance, resource: AuditEvent, operation: [read, search], validator: Allowed}
  - name: patient-own
    role: Patient
    resource: [Patient, Observation, AuditEvent]
    operation: [read, search]
    validator: PatientCompartment
  - name: researcher-audit
    role: Researcher
    resource: AuditEvent
    operation: [read, search]
    validator: Allowed
    property-filters: [{path: agent, action: remove}]
"""


def load(text: str) -> None:
    ruleset.replace_rules(ruleset.parse_yaml(text))
    rules.forget_rules()  # a test transaction never commits, so the cache would not learn of it


@pytest.fixture
def traffic(seeded: Fhir) -> dict:
    """Some requests as the operator, and as a practitioner (an identity to search `agent` by)."""
    fhir = seeded
    assert fhir.get("Patient/p1").status_code == 200
    assert fhir.get("Observation?subject=Patient/p1").status_code == 200
    assert fhir.get("Patient/missing").status_code == 404
    doctor = Fhir(fhir.client)
    doctor_auth = {"Authorization": bearer("Admin", "Practitioner/dr")}
    assert doctor.get("Patient/p2", headers=doctor_auth).status_code == 200
    return {"doctor": doctor_auth}


def search(fhir: Fhir, query: str = "", **headers) -> dict:
    response = fhir.get(f"AuditEvent?{query}", headers=headers or None)
    assert response.status_code == 200, response.content
    return response.json_body


def events(bundle: dict) -> list[dict]:
    return [e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


def targets(event: dict) -> set[str]:
    return {e["what"]["reference"] for e in event.get("entity", []) if "reference" in e.get("what", {})}


def test_search_returns_a_searchset_of_valid_audit_events(fhir, traffic):
    bundle = search(fhir, "_count=100")
    assert bundle["type"] == "searchset"
    assert validate_resource(bundle) == []
    found = events(bundle)
    assert len(found) == AuditEntry.objects.count() - 0 or len(found) >= 8
    for entry in bundle["entry"]:
        assert entry["fullUrl"].endswith(f"/AuditEvent/{entry['resource']['id']}")
        assert entry["search"] == {"mode": "match"}
        assert validate_resource(entry["resource"]) == []
    # Newest first.
    recorded = [e["recorded"] for e in found]
    assert recorded == sorted(recorded, reverse=True)
    assert bundle["total"] == len(found)  # the whole result is on the first page


def test_the_search_itself_is_audited_as_an_auditevent_search(fhir, traffic):
    search(fhir)
    row = AuditEntry.objects.order_by("-id").first()
    assert (row.operation, row.resource_type, row.rule, row.outcome) == (
        "search",
        "AuditEvent",
        "admin-all",
        "success",
    )
    assert row.results.startswith("AuditEvent/")
    assert not row.patients.exists()  # reading the log is not reading a patient's record


def test_date(fhir, traffic):
    today = datetime.now(UTC).date()
    everything = len(events(search(fhir, "_count=100")))
    assert len(events(search(fhir, f"date=ge{today - timedelta(days=1)}&_count=100"))) >= everything
    assert events(search(fhir, f"date=lt{today - timedelta(days=1)}")) == []
    assert events(search(fhir, f"date=gt{today + timedelta(days=1)}")) == []
    # Repeated: both bounds apply.
    both = search(fhir, f"date=ge{today}&date=lt{today + timedelta(days=1)}&_count=100")
    assert len(events(both)) >= everything
    one = events(search(fhir, "_count=1"))[0]
    exact = events(search(fhir, f"date=eq{one['recorded']}&_count=100"))
    assert one["id"] in {e["id"] for e in exact}


def test_agent(fhir, traffic):
    found = events(search(fhir, "agent=Practitioner/dr"))
    assert len(found) == 1
    caller = found[0]["agent"][0]
    assert caller["who"] == {"reference": "Practitioner/dr"}
    assert caller["requestor"] is True
    assert caller["network"]["type"] == "2"
    assert "Patient/p2/_history/1" in targets(found[0])
    assert events(search(fhir, "agent=Practitioner/nobody")) == []


def test_entity(fhir, traffic):
    found = events(search(fhir, "entity=Patient/p1&_count=100"))
    subtypes = sorted(e["subtype"][0]["code"] for e in found)
    assert subtypes == ["read", "update"]  # the PUT that created it, then the read
    # A search that returned it is not an entity of the AuditEvent of `Observation`...
    obs = events(search(fhir, "entity=Observation/o1&_count=100"))
    assert sorted(e["subtype"][0]["code"] for e in obs) == ["search-type", "update"]
    # ... and a versioned reference matches that version only.
    assert len(events(search(fhir, "entity=Patient/p1/_history/1&_count=100"))) == 2
    assert events(search(fhir, "entity=Patient/p1/_history/7")) == []
    # The refused read of an unknown resource names its target.
    missing = events(search(fhir, "entity=Patient/missing"))
    assert len(missing) == 1 and missing[0]["outcome"] == "4"
    # No prefix match: p1 is not p10.
    fhir.put("Patient/p10", {"resourceType": "Patient", "id": "p10"})
    assert len(events(search(fhir, "entity=Patient/p1&_count=100"))) == 2


def test_patient_includes_searches_that_returned_its_resources(fhir, traffic):
    found = events(search(fhir, "patient=Patient/p1&_count=100"))
    codes = sorted(e["subtype"][0]["code"] for e in found)
    assert codes == ["read", "search-type", "update", "update"]  # Patient PUT, Observation PUT, read, search
    query = next(e for e in found if e["subtype"][0]["code"] == "search-type")
    assert {"reference": "Patient/p1"} in [e.get("what") for e in query["entity"]]
    assert search(fhir, "patient=p1&_count=100")["total"] == len(found)  # a bare id is the same
    p2 = events(search(fhir, "patient=Patient/p2&_count=100"))
    assert {e["subtype"][0]["code"] for e in p2} == {"update", "read"}
    assert all("Observation/o1/_history/1" not in targets(e) for e in p2)


def test_outcome_subtype_action(fhir, traffic):
    failed = events(search(fhir, "outcome=4"))
    assert [e["outcomeDesc"] for e in failed] and all(e["outcome"] == "4" for e in failed)
    assert any("Patient/missing" in targets(e) for e in failed)
    assert events(search(fhir, "outcome=8")) == []
    ok = events(
        search(fhir, "outcome=http://terminology.hl7.org/CodeSystem/audit-event-outcome|0&_count=100")
    )
    assert ok and all(e["outcome"] == "0" for e in ok)
    reads = events(search(fhir, "subtype=read&_count=100"))
    assert reads and all(e["subtype"][0]["code"] == "read" and e["action"] == "R" for e in reads)
    executes = events(search(fhir, "action=E&_count=100"))
    assert executes and all(e["action"] == "E" for e in executes)
    both = events(search(fhir, "subtype=read,search-type&_count=100"))
    assert {e["subtype"][0]["code"] for e in both} == {"read", "search-type"}


def test_paging_walks_every_row_once_newest_first(fhir, traffic):
    everything = [str(pk) for pk in AuditEntry.objects.order_by("-time", "-id").values_list("pk", flat=True)]
    seen: list[str] = []
    bundle = search(fhir, "_count=3&_total=accurate")
    total = bundle["total"]
    while True:
        page = events(bundle)
        assert len(page) <= 3
        seen += [e["id"] for e in page]
        links = {link["relation"]: link["url"] for link in bundle["link"]}
        if "next" not in links:
            break
        parsed = urlsplit(links["next"])
        assert ("_count", "3") in parse_qsl(parsed.query)
        bundle = search(fhir, parsed.query)
    # The searches made while paging are newer than the first page's rows: the walk sees the rows
    # that existed when it started, once each, in order.
    assert seen == everything
    assert total == len(everything)
    # Ascending, the same rows the other way round (the walk's own searches come last).
    bundle = search(fhir, "_count=100&_sort=date")
    assert [e["id"] for e in events(bundle)][: len(everything)] == everything[::-1]


def test_bad_cursor_and_bad_values_are_400_naming_the_parameter(fhir, traffic):
    for query, name in [
        ("_page=not-a-cursor", "_page"),
        ("date=yesterday", "date"),
        ("date=ge2024-13-45", "date"),
        ("agent=Practitioner/", "agent"),
        ("entity=Patient/p1/_history/x", "entity"),
        ("patient=Observation/o1", "patient"),
        ("outcome=5", "outcome"),
        ("subtype=wander", "subtype"),
        ("action=X", "action"),
        ("agent=", "agent"),
        ("_count=many", "_count"),
        ("_total=some", "_total"),
    ]:
        response = fhir.get(f"AuditEvent?{query}")
        assert response.status_code == 400, (query, response.content)
        issue = response.json_body["issue"][0]
        assert name in issue["diagnostics"] or issue.get("expression") == [name], (query, issue)
    # A cursor of another sort order is refused too.
    bundle = search(fhir, "_count=1")
    following = next(link["url"] for link in bundle["link"] if link["relation"] == "next")
    cursor = dict(parse_qsl(urlsplit(following).query))["_page"]
    assert fhir.get(f"AuditEvent?_sort=date&_page={cursor}").status_code == 400


def test_unknown_parameters_are_reported_or_refused_when_strict(fhir, traffic):
    bundle = search(fhir, "nonsense=1&_count=2")
    outcome = [e for e in bundle["entry"] if e["search"]["mode"] == "outcome"]
    assert "nonsense" in outcome[0]["resource"]["issue"][0]["diagnostics"]
    assert all("nonsense" not in link["url"] for link in bundle["link"])
    strict = fhir.get("AuditEvent?nonsense=1", headers={"Prefer": "handling=strict"})
    assert strict.status_code == 400
    assert "nonsense" in strict.json_body["issue"][0]["diagnostics"]


def test_count_zero_and_summary_count(fhir, traffic):
    total = AuditEntry.objects.count()
    zero = search(fhir, "_count=0")
    assert zero["total"] == total and "entry" not in zero
    assert search(fhir, "_summary=count")["total"] >= total


def test_read(fhir, traffic):
    row = AuditEntry.objects.filter(resource_type="Patient", resource_id="p1", operation="read").get()
    response = fhir.get(f"AuditEvent/{row.pk}")
    assert response.status_code == 200
    event = response.json_body
    assert event["id"] == str(row.pk) and validate_resource(event) == []
    assert event["entity"][1:] == [
        {
            "what": {"reference": "Patient/p1"},
            "type": {
                "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                "code": "1",
                "display": "Person",
            },
            "role": {
                "system": "http://terminology.hl7.org/CodeSystem/object-role",
                "code": "1",
                "display": "Patient",
            },
        },
        {
            "what": {"reference": "Patient/p1/_history/1"},
            "type": {
                "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                "code": "2",
                "display": "System Object",
            },
            "role": {
                "system": "http://terminology.hl7.org/CodeSystem/object-role",
                "code": "4",
                "display": "Domain Resource",
            },
        },
    ]
    assert response["ETag"] == 'W/"1"'
    assert fhir.get("AuditEvent/999999999").status_code == 404
    assert fhir.get("AuditEvent/not-a-number").status_code == 404


def test_server_entries_are_read_only(fhir, traffic):
    row = AuditEntry.objects.first()
    body = {"resourceType": "AuditEvent"}
    for response in (
        fhir.put(f"AuditEvent/{row.pk}", body),
        fhir.delete(f"AuditEvent/{row.pk}"),
        fhir.patch(f"AuditEvent/{row.pk}", "[]"),
    ):
        assert response.status_code == 405, response.content
        assert response["Allow"] == "GET, HEAD"
        assert response.json_body["resourceType"] == "OperationOutcome"
    # POST on the type is a create of a client AuditEvent (test_client_events.py): this one is invalid.
    assert fhir.post("AuditEvent", body).status_code == 400
    # POST _search is a search, with a form body.
    form = fhir.client.post(
        "/fhir/AuditEvent/_search", "subtype=read", content_type="application/x-www-form-urlencoded"
    )
    assert form.status_code == 200
    assert AuditEntry.objects.filter(http_method="PUT", resource_type="AuditEvent", status=405).count() == 1


def test_agent_by_bare_id(fhir, traffic):
    found = events(search(fhir, "agent=dr"))
    assert [e["agent"][0]["who"] for e in found] == [{"reference": "Practitioner/dr"}]


def test_a_role_without_an_auditevent_rule_is_refused(fhir, traffic):
    patient = {"Authorization": bearer("Patient", "Patient/p1")}
    response = fhir.get("AuditEvent", headers=patient)
    assert response.status_code == 403
    assert fhir.get(f"AuditEvent/{AuditEntry.objects.first().pk}", headers=patient).status_code == 403
    assert Fhir(fhir.client).client.get("/fhir/AuditEvent", HTTP_AUTHORIZATION="").status_code == 401


def test_compliance_role_with_an_allowed_rule_can_search_and_read(fhir, traffic):
    load(COMPLIANCE_RULES)
    compliance = {"Authorization": bearer("Compliance")}
    bundle = search(fhir, "patient=Patient/p1&_count=100", **compliance)
    assert len(events(bundle)) == 4
    one = events(bundle)[0]["id"]
    assert fhir.get(f"AuditEvent/{one}", headers=compliance).status_code == 200
    row = AuditEntry.objects.order_by("-id").first()
    assert (row.role, row.operation, row.rule) == ("Compliance", "read", "compliance")
    # A rule that narrows (a compartment) or filters properties cannot apply to the log: such roles
    # search client AuditEvents only (none here), and a log entry reads like a missing one.
    for caller in (bearer("Patient", "Patient/p1"), bearer("Researcher")):
        bundle = search(fhir, "_count=100", Authorization=caller)
        assert events(bundle) == [] and bundle["total"] == 0
        assert fhir.get(f"AuditEvent/{one}", headers={"Authorization": caller}).status_code == 404
    # Compliance may not do anything else.
    assert fhir.get("Patient/p1", headers=compliance).status_code == 403


def test_console_is_read_only_and_finds_who_accessed_a_patient(admin_client, fhir, traffic):
    changelist = admin_client.get("/admin/audit/auditentry/")
    assert changelist.status_code == 200
    assert admin_client.get("/admin/audit/auditentry/add/").status_code == 403
    row = AuditEntry.objects.filter(operation="search").first()
    page = admin_client.get(f"/admin/audit/auditentry/{row.pk}/change/")
    assert page.status_code == 200
    assert b"AuditEvent" in page.content and b"Patient/p1" in page.content
    assert b'name="_save"' not in page.content  # nothing to save
    assert admin_client.post(f"/admin/audit/auditentry/{row.pk}/delete/").status_code == 403
    for url in ("/admin/audit/auditentry/?patient=p1", "/admin/audit/auditentry/?q=Patient/p1"):
        listed = admin_client.get(url)
        assert listed.status_code == 200
        shown = {entry.pk for entry in listed.context["cl"].result_list}
        assert row.pk in shown
        assert shown == set(
            AuditEntry.objects.filter(export.patient_condition("p1")).values_list("pk", flat=True)
        )
    filtered = admin_client.get("/admin/audit/auditentry/?outcome__exact=failure&operation__exact=read")
    assert [entry.resource_id for entry in filtered.context["cl"].result_list] == ["missing"]
