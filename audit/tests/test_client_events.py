"""Client AuditEvents (apps recording their own events, IHE BALP https://profiles.ihe.net/ITI/BALP/)
stored as ordinary resources beside the server's read-only log entries (audit/api.py,
audit/server_entries.py): create, read, update, history, delete under the access rules; searches that
merge both sources in one order with one paging; server entries not writable by any route; a role
without rules refused; a patient sees only the client AuditEvents of its own compartment."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest

from audit.models import AuditEntry
from audit.server_entries import SERVER_TAG
from authz import rules, ruleset
from conftest import Fhir, bearer
from resources.fhirdates import parse_range
from resources.models import Resource
from resources.validation import validate_resource

pytestmark = pytest.mark.django_db

TAG = f"{SERVER_TAG['system']}|{SERVER_TAG['code']}"

RULES = """
rules:
  - {name: admin-all, role: Admin, resource: "*", operation: "*", validator: Allowed}
  - name: patient-own
    role: Patient
    resource: [Patient, AuditEvent]
    operation: [read, search, create]
    validator: PatientCompartment
  - {name: compliance, role: Compliance, resource: AuditEvent, operation: [read, vread, search], validator: Allowed}
"""


def load(text: str) -> None:
    ruleset.replace_rules(ruleset.parse_yaml(text))
    rules.forget_rules()  # a test transaction never commits, so the cache would not learn of it


def event(recorded: str, patient: str = "p1", **extra) -> dict:
    """A small BALP-like client AuditEvent: an app read a patient's record."""
    return {
        "resourceType": "AuditEvent",
        "type": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110110"},
        "action": "R",
        "recorded": recorded,
        "outcome": "0",
        "agent": [{"who": {"reference": "Device/app"}, "requestor": True}],
        "source": {"observer": {"display": "a mobile app"}},
        "entity": [{"what": {"reference": f"Patient/{patient}"}}],
        **extra,
    }


def instant(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def matches(bundle: dict) -> list[dict]:
    return [e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


def search(fhir: Fhir, query: str = "", headers: dict | None = None) -> dict:
    response = fhir.get(f"AuditEvent?{query}", headers=headers)
    assert response.status_code == 200, response.content
    return response.json_body


def is_server_entry(resource: dict) -> bool:
    return SERVER_TAG in resource["meta"].get("tag", [])


def test_create_read_update_history_delete(seeded):
    fhir = seeded
    created = fhir.post("AuditEvent", event("2026-01-02T03:04:05Z"))
    assert created.status_code == 201, created.content
    body = created.json_body
    fhir_id = body["id"]
    assert not fhir_id.isdigit() and not is_server_entry(body)
    assert fhir.get(f"AuditEvent/{fhir_id}").json_body["recorded"] == "2026-01-02T03:04:05Z"
    row = AuditEntry.objects.order_by("-id")[1]  # the create's own row (the read's is last)
    assert (row.operation, row.resource_type, row.resource_id) == ("create", "AuditEvent", "")
    assert row.results == f"AuditEvent/{fhir_id}@1"

    updated = fhir.put(f"AuditEvent/{fhir_id}", {**event("2026-01-02T03:04:06Z"), "id": fhir_id})
    assert updated.status_code == 200 and updated.json_body["meta"]["versionId"] == "2"
    history = fhir.get(f"AuditEvent/{fhir_id}/_history").json_body
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["2", "1"]
    assert fhir.get(f"AuditEvent/{fhir_id}/_history/1").json_body["recorded"] == "2026-01-02T03:04:05Z"
    # Update-as-create with a client id, then delete.
    assert (
        fhir.put("AuditEvent/app-evt-1", {**event("2026-01-03T00:00:00Z"), "id": "app-evt-1"}).status_code
        == 201
    )
    assert fhir.delete(f"AuditEvent/{fhir_id}").status_code in (200, 204)
    assert fhir.get(f"AuditEvent/{fhir_id}").status_code == 410
    assert fhir.get("AuditEvent/_history").status_code == 200


def test_server_entries_are_distinguishable_and_not_writable(seeded):
    fhir = seeded
    entry = AuditEntry.objects.order_by("id").first()
    read = fhir.get(f"AuditEvent/{entry.pk}")
    assert read.status_code == 200 and is_server_entry(read.json_body)
    assert read.json_body["source"]["observer"] == {"display": "fhirplatform"}
    assert fhir.get(f"AuditEvent/{entry.pk}/_history/1").json_body == read.json_body
    assert fhir.get(f"AuditEvent/{entry.pk}/_history/2").status_code == 404
    assert fhir.get(f"AuditEvent/{entry.pk}/_history").status_code == 404

    body = event("2026-01-02T03:04:05Z")
    # The same refusal for an entry that exists and for one that does not: digits are the log's.
    for fhir_id in (str(entry.pk), "987654321"):
        for response in (
            fhir.put(f"AuditEvent/{fhir_id}", {**body, "id": fhir_id}),
            fhir.patch(f"AuditEvent/{fhir_id}", "[]"),
            fhir.delete(f"AuditEvent/{fhir_id}"),
        ):
            assert response.status_code == 405, response.content
            assert response["Allow"] == "GET, HEAD"
            assert "read-only" in response.json_body["issue"][0]["diagnostics"]
    # Nor through a transaction or a conditional update, which reach the storage layer directly.
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {**body, "id": str(entry.pk)},
                "request": {"method": "PUT", "url": f"AuditEvent/{entry.pk}"},
            }
        ],
    }
    assert fhir.post("", bundle).status_code == 405
    batch = {
        **bundle,
        "type": "batch",
        "entry": [{"request": {"method": "DELETE", "url": f"AuditEvent/{entry.pk}"}}],
    }
    answer = fhir.post("", batch).json_body
    assert answer["entry"][0]["response"]["status"].startswith("405")
    conditional = fhir.put("AuditEvent?entity=Patient/nobody", {**body, "id": "4242"})
    assert conditional.status_code == 405
    assert not Resource.objects.system("test").filter(resource_type="AuditEvent").exists()
    # A client AuditEvent cannot wear the server's tag.
    tagged = fhir.post("AuditEvent", {**body, "meta": {"tag": [SERVER_TAG]}})
    assert tagged.status_code == 400 and "server-log" in tagged.json_body["issue"][0]["diagnostics"]
    assert AuditEntry.objects.filter(pk=entry.pk).exists()


def test_search_merges_both_sources_in_one_order_and_pages_each_row_once(seeded):
    fhir = seeded
    assert fhir.get("Patient/p1").status_code == 200
    log_times = list(AuditEntry.objects.order_by("time", "id").values_list("time", flat=True))
    earliest, latest = log_times[0], log_times[-1]
    recorded = [
        instant(latest + timedelta(days=1)),  # newer than every log entry
        instant(log_times[len(log_times) // 2]),  # the very instant of a log entry: a tie
        instant(earliest + (latest - earliest) / 3),  # between log entries
        "2020-05-06T07:08:09Z",  # older than every log entry
    ]
    for value in recorded:
        assert fhir.post("AuditEvent", event(value)).status_code == 201
    # The merged order as this module reads the spec: newest first, log entries before client ones
    # at one instant.
    rows = [(t, 0, str(pk)) for pk, t in AuditEntry.objects.values_list("pk", "time")]
    clients = {
        json.loads(r.body)["recorded"]: r.fhir_id
        for r in Resource.objects.system("test").filter(resource_type="AuditEvent")
    }
    rows += [(parse_range(value)[1], 1, clients[value]) for value in recorded]
    # (Log ids grow with time, so within the log the key order is the id order.)
    expected = [fhir_id for _t, _rank, fhir_id in sorted(rows, key=lambda r: (-r[0].timestamp(), r[1]))]

    seen: list[str] = []
    bundle = search(fhir, "_count=3&_total=accurate")
    assert bundle["total"] == len(expected)
    while True:
        page = matches(bundle)
        assert len(page) <= 3
        seen += [e["id"] for e in page]
        links = {link["relation"]: link["url"] for link in bundle["link"]}
        if "next" not in links:
            break
        bundle = search(fhir, urlsplit(links["next"]).query)
    assert seen == expected
    assert {fhir_id for fhir_id in seen if not fhir_id.isdigit()} == set(clients.values())

    # Oldest first: the same rows the other way round (among them, the walk's own searches' rows).
    ascending = [e["id"] for e in matches(search(fhir, "_sort=date&_count=100"))]
    assert [fhir_id for fhir_id in ascending if fhir_id in expected] == expected[::-1]
    # _tag tells the two apart, and _summary=count adds both sources.
    tagged = matches(search(fhir, f"_tag={TAG}&_count=100"))
    assert tagged and all(e["id"].isdigit() and is_server_entry(e) for e in tagged)
    count = search(fhir, "_summary=count")["total"]
    assert count == AuditEntry.objects.count() - 1 + len(recorded)  # the count's own row comes after


def test_a_parameter_the_log_cannot_search_leaves_it_out_and_says_so(seeded):
    fhir = seeded
    fhir.post(
        "AuditEvent",
        event("2026-01-02T03:04:05Z", **{"source": {"site": "ward-7", "observer": {"display": "app"}}}),
    )
    bundle = search(fhir, "site=ward-7&_count=100")
    assert [e["source"]["site"] for e in matches(bundle)] == ["ward-7"]
    notes = [e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "outcome"]
    assert "site" in notes[0]["issue"][0]["diagnostics"]
    assert notes[0]["issue"][0]["severity"] == "information"
    # Parameters both sides understand apply to both.
    both = matches(search(fhir, "patient=Patient/p1&_count=100"))
    assert any(e["id"].isdigit() for e in both) and any(not e["id"].isdigit() for e in both)


def test_the_audit_row_of_a_search_lists_exactly_what_it_returned(seeded):
    fhir = seeded
    for value in ("2020-01-01T00:00:00Z", "2099-01-01T00:00:00Z"):
        fhir.post("AuditEvent", event(value))
    bundle = search(fhir, "_count=2")
    row = AuditEntry.objects.order_by("-id").first()
    assert row.operation == "search"
    assert [item.partition("@")[0] for item in row.results.split()] == [
        f"AuditEvent/{e['id']}" for e in matches(bundle)
    ]


def test_includes_apply_to_client_events(seeded):
    fhir = seeded
    fhir.post("AuditEvent", event("2099-01-01T00:00:00Z", "p2"))
    bundle = search(fhir, "_include=AuditEvent:patient&_count=1")
    included = [e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "include"]
    assert [(r["resourceType"], r["id"]) for r in included] == [("Patient", "p2")]
    # A page the log fills holds no resource included for the client rows it did not serve.
    fhir.post("AuditEvent", event("2020-01-01T00:00:00Z", "p1"))
    bundle = search(fhir, "patient=Patient/p1&_include=AuditEvent:patient&_count=1")
    assert [e["search"]["mode"] for e in bundle["entry"]] == ["match"]
    assert matches(bundle)[0]["id"].isdigit()
    oldest_first = search(fhir, "patient=Patient/p1&_include=AuditEvent:patient&_count=1&_sort=date")
    assert [(e["search"]["mode"], e["resource"]["id"]) for e in oldest_first["entry"]][1:] == [
        ("include", "p1")
    ]


def test_a_role_without_rules_is_refused(seeded):
    fhir = seeded
    nobody = {"Authorization": bearer("Nobody")}
    assert fhir.get("AuditEvent", headers=nobody).status_code == 403
    assert fhir.post("AuditEvent", event("2026-01-02T03:04:05Z"), headers=nobody).status_code == 403
    assert fhir.get(f"AuditEvent/{AuditEntry.objects.first().pk}", headers=nobody).status_code == 403
    assert fhir.get("AuditEvent/anything", headers=nobody).status_code == 403


def test_a_patient_sees_only_its_own_client_events_and_never_the_log(seeded):
    fhir = seeded
    load(RULES)
    mine = fhir.post("AuditEvent", event("2026-01-02T03:04:05Z", "p1")).json_body["id"]
    theirs = fhir.post("AuditEvent", event("2026-01-02T03:04:06Z", "p2")).json_body["id"]
    patient = {"Authorization": bearer("Patient", "Patient/p1")}
    bundle = search(fhir, "_count=100", patient)
    assert [e["id"] for e in matches(bundle)] == [mine]
    assert bundle["total"] == 1
    assert fhir.get(f"AuditEvent/{mine}", headers=patient).status_code == 200
    assert fhir.get(f"AuditEvent/{theirs}", headers=patient).status_code == 404
    # A log entry, even one about this patient, answers like a missing one.
    entry = AuditEntry.objects.filter(resource_type="Patient", resource_id="p1").first()
    assert fhir.get(f"AuditEvent/{entry.pk}", headers=patient).status_code == 404
    # It records its own events, in its own compartment only.
    own = fhir.post("AuditEvent", event("2026-01-03T00:00:00Z", "p1"), headers=patient)
    assert own.status_code == 201
    assert fhir.post("AuditEvent", event("2026-01-03T00:00:00Z", "p2"), headers=patient).status_code == 403
    assert {e["id"] for e in matches(search(fhir, "_count=100", patient))} == {mine, own.json_body["id"]}
    # A compliance officer's Allowed rule shows the log and every client event.
    compliance = {"Authorization": bearer("Compliance")}
    everything = matches(search(fhir, "_count=100", compliance))
    assert {mine, theirs} <= {e["id"] for e in everything}
    assert any(is_server_entry(e) for e in everything)
    assert fhir.get(f"AuditEvent/{entry.pk}", headers=compliance).status_code == 200
    assert all(validate_resource(e) == [] for e in everything)


def test_capability_statement_offers_the_writes(fhir):
    statement = fhir.get("metadata").json_body
    entry = next(r for r in statement["rest"][0]["resource"] if r["type"] == "AuditEvent")
    codes = {i["code"] for i in entry["interaction"]}
    assert {"create", "update", "delete", "read", "vread", "history-instance", "search-type"} <= codes
    assert "server-log" in entry["documentation"]
    assert {"date", "agent", "patient", "entity"} <= {p["name"] for p in entry["searchParam"]}


def test_rows_a_body_check_drops_do_not_disturb_the_merged_order(seeded):
    """The engine drops, after SQL, rows whose rule's FHIRPath check fails: the merged page must
    stop where the engine stopped looking, or a log entry could overtake an unseen client row."""
    fhir = seeded
    load(
        RULES
        + """
  - name: auditor-checked
    role: Auditor
    resource: AuditEvent
    operation: search
    validator: {FhirPath: {expression: "outcome = '0'", search: "action=R"}}
  - {name: auditor-all, role: Auditor, resource: AuditEvent, operation: [search], validator: Allowed}
"""
    )
    newest = AuditEntry.objects.order_by("-time").first().time
    # Newest first: one shown, four hidden (outcome 4), one shown, all newer than the log; then the
    # log; then one shown, older than the log.
    shown_new = fhir.post("AuditEvent", event(instant(newest + timedelta(days=9)))).json_body["id"]
    for days in range(5, 9):
        fhir.post("AuditEvent", {**event(instant(newest + timedelta(days=days))), "outcome": "4"})
    shown_mid = fhir.post("AuditEvent", event(instant(newest + timedelta(days=1)))).json_body["id"]
    shown_old = fhir.post("AuditEvent", event("2020-01-01T00:00:00Z")).json_body["id"]
    before = {str(pk) for pk in AuditEntry.objects.values_list("pk", flat=True)}
    auditor = {"Authorization": bearer("Auditor")}
    seen: list[str] = []
    bundle = search(fhir, "_count=2", auditor)
    assert "total" not in bundle  # a body check may drop rows: no count is given
    for _ in range(50):
        seen += [e["id"] for e in matches(bundle)]
        links = {link["relation"]: link["url"] for link in bundle["link"]}
        if "next" not in links:
            break
        bundle = search(fhir, urlsplit(links["next"]).query, auditor)
    # Between the two client rows shown, every log row from where the walk entered the log (its own
    # earlier pages' rows included) down to the oldest, in order, once each.
    log_ids = [str(pk) for pk in AuditEntry.objects.order_by("-time", "-id").values_list("pk", flat=True)]
    assert (seen[:2], seen[-1]) == ([shown_new, shown_mid], shown_old)
    middle = seen[2:-1]
    assert middle == log_ids[log_ids.index(middle[0]) :]
    assert before <= set(middle)
