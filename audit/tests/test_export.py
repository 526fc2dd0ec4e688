"""`manage.py audit_export` and the AuditEvent mapping (audit/export.py, audit/fhir.py): each format,
the filters, "who accessed this patient", all-or-nothing refusals, and R4 validity of every
AuditEvent produced (https://hl7.org/fhir/R4/auditevent.html, https://profiles.ihe.net/ITI/BALP/)."""

from __future__ import annotations

import base64
import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from audit import export, fhir, services
from audit.models import AuditEntry
from authz.context import AccessContext
from conftest import Fhir, bearer
from resources.validation import validate_resource

pytestmark = pytest.mark.django_db


@pytest.fixture
def traffic(seeded: Fhir) -> dict:
    fhir = seeded
    doctor = {"Authorization": bearer("Admin", "Practitioner/dr")}
    # The doctor never reads Patient/p1 directly: only a search returns its Observation.
    assert fhir.get("Observation?code:text=pulse", headers=doctor).status_code == 200
    assert fhir.get("Patient/p2", headers=doctor).status_code == 200
    fhir.get("Patient/nope")
    return {"doctor": doctor}


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("audit_export", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_csv_to_a_file(traffic, tmp_path: Path):
    target = tmp_path / "audit.csv"
    out, err = run("--format", "csv", "--output", str(target))
    assert out == ""
    total = AuditEntry.objects.exclude(operation="audit-export").count()
    assert f"{total} rows exported" in err and "rows/s" in err
    rows = list(csv.DictReader(target.open(encoding="utf-8")))
    assert list(rows[0]) == [*export.COLUMNS, "patients"]
    assert len(rows) == total
    assert [int(r["id"]) for r in rows] == list(
        AuditEntry.objects.exclude(operation="audit-export")
        .order_by("time", "id")
        .values_list("pk", flat=True)
    )
    search = next(r for r in rows if r["identity"] == "Practitioner/dr" and r["operation"] == "search")
    assert search["patients"] == "p1" and search["results"] == "Observation/o1@1"
    assert search["rules_version"].isdigit()  # the rule set that let the practitioner search
    assert list(tmp_path.iterdir()) == [target]  # no temporary file left behind


def test_ndjson_to_stdout_has_every_column_and_the_patients(traffic):
    out, _err = run("--format", "ndjson")
    lines = out.splitlines()
    assert len(lines) == AuditEntry.objects.exclude(operation="audit-export").count()
    first = json.loads(lines[0])
    assert set(first) == {*export.COLUMNS, "patients"}
    for line in lines:
        row = json.loads(line)
        entry = AuditEntry.objects.get(pk=row["id"])
        assert row["hash"] == entry.hash and row["seq"] == entry.seq and row["status"] == entry.status
        assert row["rules_version"] == entry.rules_version
        assert datetime.fromisoformat(row["time"]) == entry.time
        assert row["patients"] == sorted(entry.patients.values_list("patient_id", flat=True))


def test_fhir_bundle_validates_and_holds_one_auditevent_per_row(traffic, tmp_path: Path, settings):
    settings.FHIR_BASE_URL = "https://fhir.example.org/fhir"
    target = tmp_path / "audit.json"
    run("--format", "fhir", "--output", str(target))
    bundle = json.loads(target.read_text(encoding="utf-8"))
    assert bundle["type"] == "collection"
    assert validate_resource(bundle) == []
    assert len(bundle["entry"]) == AuditEntry.objects.exclude(operation="audit-export").count()
    for entry in bundle["entry"]:
        event = entry["resource"]
        assert entry["fullUrl"] == f"https://fhir.example.org/fhir/AuditEvent/{event['id']}"
        assert validate_resource(event) == []
        assert event["source"]["observer"] == {"display": "fhirplatform"}
        assert event["type"]["code"] == "rest"


def test_an_empty_export_is_still_valid(db, tmp_path: Path):
    out, err = run("--format", "fhir", "--since", "2999-01-01")
    bundle = json.loads(out)
    assert "entry" not in bundle and validate_resource(bundle) == []
    assert "0 rows exported" in err
    assert (
        run("--format", "csv", "--since", "2999-01-01")[0] == ",".join([*export.COLUMNS, "patients"]) + "\n"
    )
    assert run("--format", "ndjson", "--since", "2999-01-01")[0] == ""


def test_since_and_until(traffic):
    rows = list(AuditEntry.objects.exclude(operation="audit-export").order_by("time", "id"))
    middle = rows[len(rows) // 2]
    before, _ = run("--format", "ndjson", "--until", middle.time.isoformat())
    after, _ = run("--format", "ndjson", "--since", middle.time.isoformat())
    ids_before = [json.loads(line)["id"] for line in before.splitlines()]
    # The first export is audited too, and its row falls in the second one's window.
    exports = set(AuditEntry.objects.filter(operation="audit-export").values_list("pk", flat=True))
    ids_after = [i for i in (json.loads(line)["id"] for line in after.splitlines()) if i not in exports]
    assert exports
    # Consecutive exports neither overlap nor leave a gap (until is exclusive).
    assert sorted(ids_before + ids_after) == sorted(r.pk for r in rows)
    assert not set(ids_before) & set(ids_after)
    today = datetime.now(UTC).date()
    assert run("--format", "csv", "--until", str(today))[0].count("\n") == 1
    exported = AuditEntry.objects.filter(operation="audit-export").count()  # the exports so far
    text = run("--format", "csv", "--since", str(today), "--until", str(today + timedelta(days=1)))[0]
    assert text.count("\n") == len(rows) + exported + 1, text
    exported = AuditEntry.objects.filter(operation="audit-export").count()
    assert run("--format", "csv", "--since", f"{today}T00:00:00Z")[0].count("\n") == len(rows) + exported + 1


def test_who_accessed_this_patient_includes_searches_that_returned_its_resources(traffic):
    out, _ = run("--format", "ndjson", "--patient", "Patient/p1")
    rows = [json.loads(line) for line in out.splitlines()]
    by = {(r["identity"], r["operation"], r["resource_type"]) for r in rows}
    # The doctor never read Patient/p1, but a search returned p1's Observation.
    assert ("Practitioner/dr", "search", "Observation") in by
    assert ("", "update", "Patient") in by and ("", "update", "Observation") in by
    assert all("p1" in r["patients"] or r["resource_id"] == "p1" for r in rows)
    assert not any(r["resource_id"] == "p2" for r in rows)
    # A refused or failed access leaves no AuditPatient row, and is an access attempt all the same.
    nope, _ = run("--format", "ndjson", "--patient", "nope")
    assert [json.loads(line)["status"] for line in nope.splitlines()] == [404]


def test_actor(traffic):
    out, _ = run("--format", "ndjson", "--actor", "Practitioner/dr")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["operation"], r["resource_type"]) for r in rows] == [
        ("search", "Observation"),
        ("read", "Patient"),
    ]
    assert run("--format", "ndjson", "--actor", "Practitioner/nobody")[0] == ""


@pytest.mark.parametrize(
    "args",
    [
        ["--format", "xml"],
        ["--format", "csv", "--since", "yesterday"],
        ["--format", "csv", "--since", "2024-02-30"],
        ["--format", "csv", "--until", "2024-01-01T25:00:00Z"],
        ["--format", "csv", "--since", "2024-02-01", "--until", "2024-01-01"],
        ["--format", "csv", "--patient", "Observation/o1"],
        ["--format", "csv", "--patient", "Patient/"],
        ["--format", "csv", "--actor", "dr"],
        ["--format", "csv", "--actor", "Practitioner/a b"],
    ],
)
def test_bad_input_exits_2_and_writes_nothing(traffic, tmp_path: Path, args):
    target = tmp_path / "out.csv"
    out = io.StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("audit_export", *args, "--output", str(target), stdout=out)
    assert raised.value.returncode == 2
    assert list(tmp_path.iterdir()) == [] and out.getvalue() == ""
    with pytest.raises(CommandError):
        call_command("audit_export", *args, stdout=out)
    assert out.getvalue() == ""


def test_unwritable_output_exits_2(traffic, tmp_path: Path):
    for target in (tmp_path / "missing-dir" / "out.csv", tmp_path):
        with pytest.raises(CommandError) as raised:
            run("--format", "csv", "--output", str(target))
        assert raised.value.returncode == 2
    assert list(tmp_path.iterdir()) == []


def test_a_failure_halfway_leaves_no_file(traffic, tmp_path: Path, monkeypatch):
    target = tmp_path / "audit.json"
    target.write_text("the previous export\n")
    calls = {"n": 0}
    original = fhir.audit_event

    def failing(row):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        return original(row)

    monkeypatch.setattr(fhir, "audit_event", failing)
    with pytest.raises(CommandError) as raised:
        run("--format", "fhir", "--output", str(target))
    assert raised.value.returncode == 1
    # The previous file is untouched and no partial one is left beside it.
    assert list(tmp_path.iterdir()) == [target] and target.read_text() == "the previous export\n"


def _record(**overrides) -> AuditEntry:
    ctx = AccessContext(
        role=overrides.pop("role", "Practitioner"),
        identity=overrides.pop("identity", "Practitioner/dr"),
        method=overrides.pop("method", "oauth"),
        credential=overrides.pop("credential", "oauth:7"),
        user=overrides.pop("user", "dr.who"),
        client_id=overrides.pop("client_id", "tardis-app"),
        on_behalf_of=overrides.pop("on_behalf_of", ""),
    )
    fields = {
        "http_method": "GET",
        "path": "/fhir/Patient",
        "operation": "search",
        "resource_type": "Patient",
        "outcome": "success",
        "status": 200,
        "client_ip": "2001:db8::1",
        "user_agent": "curl/8\x0b",
        **overrides,
    }
    services.record(ctx, **fields)
    return AuditEntry.objects.order_by("-id").first()


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"query": "name=Chalmers&_count=5"},
        {"query": "name=\x0b\x0c&x=%00", "reason": "\x0c"},
        {"operation": "search", "resource_type": "", "path": "/fhir", "query": ""},
        {
            "operation": "read",
            "resource_id": "x",
            "outcome": "denied",
            "status": 403,
            "reason": "Role may not",
        },
        {"operation": "delete", "resource_id": "x", "http_method": "DELETE", "status": 204},
        {
            "operation": "create",
            "resource_type": "Bundle",
            "http_method": "POST",
            "status": 500,
            "outcome": "failure",
        },
        {"operation": "transaction", "resource_type": "Bundle", "http_method": "POST", "reason": "   "},
        {"operation": "history", "resource_type": "", "client_ip": None},
        {"operation": "everything", "resource_id": "p1", "path": "/fhir/Patient/p1/$everything"},
        {"operation": "graphql-search", "role": "Admin", "identity": None, "user": "", "client_id": ""},
        {"on_behalf_of": "urn:agent:42", "identity": None, "client_id": "", "user": ""},
    ],
)
def test_every_auditevent_validates(db, fields):
    event = fhir.from_entry(_record(**fields))
    assert validate_resource(event) == [], json.dumps(event, indent=1)
    assert event["agent"][0]["requestor"] is True
    assert event["agent"][-1]["who"] == {"display": "fhirplatform"}
    assert [a["requestor"] for a in event["agent"]].count(True) == 1


def test_balp_shapes(db):
    search = fhir.from_entry(_record(query="name=x y&_count=5", reason=""))
    assert search["subtype"] == [
        {"system": "http://hl7.org/fhir/restful-interaction", "code": "search-type", "display": "search-type"}
    ]
    assert search["action"] == "E" and search["outcome"] == "0" and "outcomeDesc" not in search
    caller, app, server = search["agent"]
    assert caller["type"]["coding"][0]["code"] == "110153"  # the client is the Source of a query
    assert caller["who"] == {"reference": "Practitioner/dr", "display": "dr.who"}
    assert caller["network"] == {"address": "2001:db8::1", "type": "2"}
    assert app["who"]["identifier"] == {"value": "tardis-app"} and app["requestor"] is False
    assert server["type"]["coding"][0]["code"] == "110152"
    query = search["entity"][-1]
    assert query["role"]["code"] == "24" and query["type"]["code"] == "2"
    assert base64.b64decode(query["query"]).decode() == "name=x y&_count=5"

    read = fhir.from_entry(
        _record(operation="read", resource_id="p9", status=404, outcome="failure", reason="gone")
    )
    assert (read["action"], read["outcome"], read["outcomeDesc"]) == ("R", "4", "gone")
    assert read["agent"][0]["type"]["coding"][0]["code"] == "110152"  # the data flows to the client
    assert read["entity"][-1]["what"] == {"reference": "Patient/p9"}

    failed = fhir.from_entry(_record(operation="update", resource_id="p9", status=500, outcome="failure"))
    assert (failed["action"], failed["outcome"], failed["outcomeDesc"]) == ("U", "8", "HTTP 500")


def test_rule_and_filters_are_recorded():
    row = {
        "id": 1,
        "time": datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
        "request_id": "r-1",
        "role": "Researcher",
        "identity": "",
        "user": "",
        "client_id": "",
        "credential": "api-token:3",
        "auth_method": "api-token",
        "on_behalf_of": "",
        "http_method": "GET",
        "path": "/fhir/Patient/a",
        "operation": "read",
        "resource_type": "Patient",
        "resource_id": "a",
        "version": "2",
        "query": "",
        "results": "Patient/a@2",
        "rule": "research anonymised",
        "rules_version": 7,
        "filters": "research anonymised:name:remove,research anonymised:birthDate:generalize-year",
        "outcome": "success",
        "status": 200,
        "reason": "",
        "client_ip": "10.0.0.1",
        "user_agent": "",
        "patients": ["a"],
    }
    event = fhir.audit_event(row)
    assert validate_resource(event) == []
    assert event["agent"][0]["policy"] == ["urn:fhirplatform:rule:research%20anonymised"]
    assert event["agent"][0]["who"] == {"display": "Researcher (api-token:3)"}
    values = [
        (e["url"].rsplit(":", 1)[1], next(v for k, v in e.items() if k.startswith("value")))
        for e in event["extension"]
    ]
    assert ("rule", "research anonymised") in values and ("rules-version", 7) in values
    assert ("filter", "research anonymised:birthDate:generalize-year") in values
    assert ("result", "success") in values and ("http-status", 200) in values
    assert event["entity"][-1]["what"] == {"reference": "Patient/a/_history/2"}
    assert event["meta"]["lastUpdated"] == event["recorded"] == "2024-05-01T12:00:00.000Z"
