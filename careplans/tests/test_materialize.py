"""CarePlan activities become Tasks: through the outbox after a write, by `$materialize` and by the
command; idempotently; following the plan's changes; in the plan's time zone; and a patient sees its
own Tasks under the rule docs/rules.md gives for it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.test import Client, override_settings
from django.utils import timezone

from authz import rules, ruleset, tokens
from authz.context import AccessContext
from careplans import jobs
from careplans.materialize import OCCURRENCE_SYSTEM, task_id
from careplans.models import Schedule
from resources.models import Resource
from resources.services import resource_update
from subscriptions import worker

SYSTEM = AccessContext.system("careplan tests")
FHIR = "application/fhir+json"
TAG = {"system": "http://fhirplatform.org/CodeSystem/careplan-scheduling", "code": "materialize"}
TZ = "http://hl7.org/fhir/StructureDefinition/tz-code"

RULES = [
    {"name": "admin-all", "role": "Admin", "resource": "*",
     "operation": ["*", "generate-token", "materialize"], "validator": "Allowed"},
    {"name": "patient-own", "role": "Patient", "resource": "*", "operation": ["read", "search"],
     "validator": "PatientCompartment"},
    # docs/rules.md: R4's Patient compartment holds no Task; a patient's own Tasks are those `for` it.
    {"name": "patient-tasks", "role": "Patient", "resource": ["Task"], "operation": ["read", "search", "update"],
     "validator": {"FhirPath": {"expression": "for.reference = 'Patient/' + %identity.id",
                                "search": "patient=%identity"}}},
]  # fmt: skip


@pytest.fixture
def world(db):
    ruleset.replace_rules(RULES)
    rules.forget_rules()  # a test's transaction never commits, so the cache would not learn of it
    for pid in ("p1", "p2"):
        resource_update(
            SYSTEM, resource_type="Patient", fhir_id=pid, body={"resourceType": "Patient", "id": pid}
        )
    yield
    rules.forget_rules()


def auth(role: str, identity: str = "") -> dict:
    _, secret = tokens.mint(role=role, identity=identity)
    return {"HTTP_AUTHORIZATION": f"Bearer {secret}"}


def careplan(patient: str = "p1", *, times=("08:00:00",), zone="Europe/Berlin", **changes) -> dict:
    start = (timezone.now() - timedelta(days=1)).date().isoformat()
    body = {
        "resourceType": "CarePlan",
        "meta": {"tag": [TAG]},
        "status": "active",
        "intent": "plan",
        "subject": {"reference": f"Patient/{patient}"},
        "period": {"start": start},
        "activity": [
            {
                "id": "bp",
                "detail": {
                    "status": "scheduled",
                    "description": "Measure blood pressure",
                    "scheduledTiming": {
                        "repeat": {
                            "boundsPeriod": {
                                "start": start,
                                "_start": {"extension": [{"url": TZ, "valueCode": zone}]},
                            },
                            "frequency": 1,
                            "period": 1,
                            "periodUnit": "d",
                            "timeOfDay": list(times),
                        }
                    },
                },
            }
        ],
    }
    body.update(changes)
    return body


def write(client, headers, body, fhir_id=None):
    if fhir_id:
        return client.put(
            f"/fhir/CarePlan/{fhir_id}", json.dumps({**body, "id": fhir_id}), content_type=FHIR, **headers
        )
    return client.post("/fhir/CarePlan", json.dumps(body), content_type=FHIR, **headers)


def tasks(plan_id: str) -> list[dict]:
    rows = Resource.objects.system("careplan tests").filter(resource_type="Task", deleted=False)
    found = [json.loads(r.body) for r in rows]
    return sorted(
        (t for t in found if t.get("basedOn") == [{"reference": f"CarePlan/{plan_id}"}]),
        key=lambda t: t["restriction"]["period"]["start"],
    )


def schedule_now() -> None:
    """What the worker does after a write: match the outbox, then plan the plans that changed."""
    worker.drain()
    while jobs.plan_changed():
        pass


def test_a_tagged_plan_becomes_daily_tasks_at_local_time(world):
    client, admin = Client(), auth("Admin")
    created = write(client, admin, careplan())
    assert created.status_code == 201, created.content
    plan_id = created.json()["id"]
    schedule_now()
    made = tasks(plan_id)
    assert 13 <= len(made) <= 15  # one a day over the 14-day horizon
    first = made[0]
    start = datetime.fromisoformat(first["restriction"]["period"]["start"].replace("Z", "+00:00"))
    assert start.astimezone(__import__("zoneinfo").ZoneInfo("Europe/Berlin")).strftime("%H:%M") == "08:00"
    assert first["status"] == "requested" and first["intent"] == "order"
    assert first["for"] == {"reference": "Patient/p1"}
    assert first["description"] == "Measure blood pressure"
    assert first["executionPeriod"] == first["restriction"]["period"]
    identifier = first["identifier"][0]
    assert identifier["system"] == OCCURRENCE_SYSTEM
    assert identifier["value"] == f"{plan_id}/bp/{start.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"
    assert first["id"] == task_id(identifier["value"])
    # Found by a search for the Tasks whose window overlaps the day.
    day, next_day = start.date().isoformat(), (start.date() + timedelta(days=1)).isoformat()
    found = client.get(
        f"/fhir/Task?period=ge{day}&period=lt{next_day}&based-on=CarePlan/{plan_id}", **admin
    ).json()
    assert first["id"] in [e["resource"]["id"] for e in found.get("entry", [])]
    # Idempotent: planning again, the command and $materialize add nothing.
    Schedule.objects.update(dirty=True)
    schedule_now()
    call_command("materialize_careplans")
    answer = client.post(f"/fhir/CarePlan/{plan_id}/$materialize", "", content_type=FHIR, **admin)
    assert answer.status_code == 200, answer.content
    assert [e for e in answer.json()["entry"] if e["resource"]["resourceType"] == "Task"] == []
    assert len(tasks(plan_id)) == len(made)


def test_plans_that_are_not_eligible_make_nothing(world):
    client, admin = Client(), auth("Admin")
    untagged = careplan()
    del untagged["meta"]
    ids = [
        write(client, admin, untagged).json()["id"],
        write(client, admin, careplan(intent="proposal")).json()["id"],
        write(client, admin, careplan(status="draft")).json()["id"],
    ]
    schedule_now()
    assert all(tasks(i) == [] for i in ids)
    with override_settings(FHIR_CAREPLAN_ALL_ACTIVE=True):
        Schedule.objects.update(dirty=True)
        schedule_now()
        assert tasks(ids[0]) and not tasks(ids[1]) and not tasks(ids[2])


def test_changes_of_the_plan_cancel_hold_resume_and_replace_future_tasks(world):
    client, admin = Client(), auth("Admin")
    plan_id = write(client, admin, careplan()).json()["id"]
    schedule_now()
    before = {t["id"] for t in tasks(plan_id)}
    # The time changes: the 08:00 Tasks are cancelled, 09:00 ones made.
    write(client, admin, careplan(times=("09:00:00",)), plan_id)
    schedule_now()
    after = tasks(plan_id)
    cancelled = {t["id"] for t in after if t["status"] == "cancelled"}
    assert cancelled == before
    assert all(t["statusReason"]["text"] for t in after if t["status"] == "cancelled")
    live = [t for t in after if t["status"] == "requested"]
    assert len(live) == len(before)
    # On hold, then active again: held, then resumed.
    write(client, admin, careplan(times=("09:00:00",), status="on-hold"), plan_id)
    schedule_now()
    assert {t["status"] for t in tasks(plan_id) if t["id"] not in cancelled} == {"on-hold"}
    write(client, admin, careplan(times=("09:00:00",)), plan_id)
    schedule_now()
    assert {t["status"] for t in tasks(plan_id) if t["id"] not in cancelled} == {"requested"}
    # Revoked: every future Task cancelled.
    write(client, admin, careplan(times=("09:00:00",), status="revoked"), plan_id)
    schedule_now()
    assert {t["status"] for t in tasks(plan_id)} == {"cancelled"}


def test_a_deleted_plan_cancels_its_future_tasks(world):
    client, admin = Client(), auth("Admin")
    plan_id = write(client, admin, careplan()).json()["id"]
    schedule_now()
    assert client.delete(f"/fhir/CarePlan/{plan_id}", **admin).status_code in (200, 204)
    schedule_now()
    assert {t["status"] for t in tasks(plan_id)} == {"cancelled"}


def test_materialize_dry_run_and_window(world):
    client, admin = Client(), auth("Admin")
    body = careplan()
    del body["meta"]  # untagged: not scheduled by itself...
    plan_id = write(client, admin, body).json()["id"]
    schedule_now()
    assert tasks(plan_id) == []
    # ...and not eligible for $materialize either: a warning says why.
    refused = client.post(f"/fhir/CarePlan/{plan_id}/$materialize", "", content_type=FHIR, **admin).json()
    assert refused["entry"][0]["resource"]["resourceType"] == "OperationOutcome"
    plan_id = write(client, admin, careplan()).json()["id"]
    start = (timezone.now() + timedelta(days=30)).replace(microsecond=0)
    params = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "start", "valueDateTime": start.isoformat()},
            {"name": "end", "valueDateTime": (start + timedelta(days=3)).isoformat()},
            {"name": "dry-run", "valueBoolean": True},
        ],
    }
    dry = client.post(
        f"/fhir/CarePlan/{plan_id}/$materialize", json.dumps(params), content_type=FHIR, **admin
    )
    assert dry.status_code == 200, dry.content
    previewed = [e["resource"] for e in dry.json()["entry"]]
    assert len(previewed) == 3 and tasks(plan_id) == []
    params["parameter"][2]["valueBoolean"] = False
    done = client.post(
        f"/fhir/CarePlan/{plan_id}/$materialize", json.dumps(params), content_type=FHIR, **admin
    )
    assert [e["resource"]["id"] for e in done.json()["entry"]] == [t["id"] for t in previewed]
    assert len(tasks(plan_id)) == 3


@pytest.mark.parametrize(
    "params",
    [
        {"resourceType": "Parameters", "parameter": [{"name": "colour", "valueString": "red"}]},
        {"resourceType": "Parameters", "parameter": [{"name": "start", "valueDateTime": "yesterday"}]},
        {"resourceType": "Parameters", "parameter": [{"name": "dry-run", "valueString": "yes"}]},
        {"resourceType": "Patient"},
    ],
)
def test_bad_materialize_input_is_a_clear_outcome(world, params):
    client, admin = Client(), auth("Admin")
    plan_id = write(client, admin, careplan()).json()["id"]
    answer = client.post(
        f"/fhir/CarePlan/{plan_id}/$materialize", json.dumps(params), content_type=FHIR, **admin
    )
    assert answer.status_code == 400
    assert answer.json()["resourceType"] == "OperationOutcome"


def test_materialize_needs_its_operation_and_a_readable_plan(world):
    client, admin = Client(), auth("Admin")
    plan_id = write(client, admin, careplan()).json()["id"]
    patient = auth("Patient", "Patient/p1")
    assert (
        client.post(f"/fhir/CarePlan/{plan_id}/$materialize", "", content_type=FHIR, **patient).status_code
        == 403
    )
    assert client.post("/fhir/CarePlan/nope/$materialize", "", content_type=FHIR, **admin).status_code == 404


def test_unschedulable_parts_are_warnings_not_silence(world):
    client, admin = Client(), auth("Admin")
    body = careplan()
    body["activity"].append(
        {"id": "walk", "detail": {"status": "scheduled", "scheduledString": "after lunch"}}
    )
    written = client.post(
        "/fhir/CarePlan", json.dumps(body), content_type=FHIR, HTTP_PREFER="return=OperationOutcome", **admin
    )
    assert written.status_code == 201
    warnings = [i for i in written.json()["issue"] if i["severity"] == "warning"]
    assert len(warnings) == 1 and "after lunch" in warnings[0]["diagnostics"]
    plan_id = written["Location"].split("/CarePlan/")[1].split("/")[0]
    answer = client.post(f"/fhir/CarePlan/{plan_id}/$materialize", "", content_type=FHIR, **admin).json()
    outcome = answer["entry"][0]["resource"]
    assert outcome["resourceType"] == "OperationOutcome"
    assert "after lunch" in json.dumps(outcome)


def test_medication_request_dosage_timing(world):
    client, admin = Client(), auth("Admin")
    request = {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "medicationCodeableConcept": {"text": "Metformin 500 mg"},
        "dosageInstruction": [
            {
                "timing": {
                    "code": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/v3-GTSAbbreviation",
                                "code": "BID",
                            }
                        ]
                    }
                }
            }
        ],
    }
    mr = client.post("/fhir/MedicationRequest", json.dumps(request), content_type=FHIR, **admin).json()
    body = careplan()
    body["activity"] = [{"reference": {"reference": f"MedicationRequest/{mr['id']}"}}]
    plan_id = write(client, admin, body).json()["id"]
    schedule_now()
    made = tasks(plan_id)
    assert 26 <= len(made) <= 30  # twice a day
    assert made[0]["focus"] == {"reference": f"MedicationRequest/{mr['id']}"}
    assert made[0]["description"] == "Metformin 500 mg"


def test_clients_may_not_write_the_occurrence_identifier_but_may_move_a_task_on(world):
    client, admin = Client(), auth("Admin")
    forged = {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "identifier": [{"system": OCCURRENCE_SYSTEM, "value": "x/y/2030-01-01T00:00:00Z"}],
    }
    refused = client.post("/fhir/Task", json.dumps(forged), content_type=FHIR, **admin)
    assert refused.status_code == 422 and OCCURRENCE_SYSTEM in refused.content.decode()
    plan_id = write(client, admin, careplan()).json()["id"]
    schedule_now()
    task = tasks(plan_id)[0]
    patient = auth("Patient", "Patient/p1")
    done = client.put(
        f"/fhir/Task/{task['id']}", json.dumps({**task, "status": "completed"}), content_type=FHIR, **patient
    )
    assert done.status_code == 200, done.content
    changed = {**task, "identifier": [{"system": OCCURRENCE_SYSTEM, "value": "other"}]}
    assert (
        client.put(f"/fhir/Task/{task['id']}", json.dumps(changed), content_type=FHIR, **admin).status_code
        == 422
    )


def test_a_patient_sees_its_own_tasks_only(world):
    client, admin = Client(), auth("Admin")
    mine = write(client, admin, careplan("p1")).json()["id"]
    theirs = write(client, admin, careplan("p2")).json()["id"]
    schedule_now()
    patient = auth("Patient", "Patient/p1")
    seen = client.get("/fhir/Task?_count=100", **patient).json()
    based_on = {e["resource"]["basedOn"][0]["reference"] for e in seen["entry"]}
    assert based_on == {f"CarePlan/{mine}"}
    other = tasks(theirs)[0]["id"]
    assert client.get(f"/fhir/Task/{other}", **patient).status_code == 404


def test_windows_open_and_close(world):
    client, admin = Client(), auth("Admin")
    plan_id = write(client, admin, careplan(times=("00:00:00", "12:00:00"), zone="UTC")).json()["id"]
    schedule_now()
    first = tasks(plan_id)[0]
    opens = datetime.fromisoformat(first["restriction"]["period"]["start"].replace("Z", "+00:00"))
    later = opens + timedelta(minutes=1)
    with override_settings():
        from careplans import materialize as planner
        from interactions import careplans as door

        run = planner.Run()
        planner.advance(door.scheduler(), now=later, run=run)
        assert any(s.fhir_id == first["id"] for s in run.changed)
        assert [t for t in tasks(plan_id) if t["id"] == first["id"]][0]["status"] == "ready"
        run = planner.Run()
        planner.advance(door.scheduler(), now=opens + timedelta(hours=13), run=run)
        assert [t for t in tasks(plan_id) if t["id"] == first["id"]][0]["status"] == "failed"


def _medication_request(client, admin, patient: str, text: str) -> str:
    body = {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": f"Patient/{patient}"},
        "medicationCodeableConcept": {"text": text},
        "dosageInstruction": [{"timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}}],
    }
    return client.post("/fhir/MedicationRequest", json.dumps(body), content_type=FHIR, **admin).json()["id"]


def test_a_plan_copies_nothing_from_another_patients_request(world):
    client, admin = Client(), auth("Admin")
    theirs = _medication_request(client, admin, "p2", "SECRET-DRUG-P2")
    warnings = []
    for ref in (f"MedicationRequest/{theirs}", "MedicationRequest/does-not-exist"):
        body = careplan("p1")
        body["activity"] = [{"reference": {"reference": ref}}]
        written = client.post(
            "/fhir/CarePlan",
            json.dumps(body),
            content_type=FHIR,
            HTTP_PREFER="return=OperationOutcome",
            **admin,
        )
        warnings.append(
            [
                i["diagnostics"].replace(ref, "REF")
                for i in written.json()["issue"]
                if i["severity"] == "warning"
            ]
        )
    schedule_now()
    assert warnings[0] == warnings[1] and len(warnings[0]) == 1  # one answer for both
    everything = Resource.objects.system("careplan tests").filter(resource_type="Task")
    assert not any("SECRET-DRUG-P2" in row.body for row in everything)


@override_settings(FHIR_CAREPLAN_MAX_TASKS_PER_PLAN=50, FHIR_CAREPLAN_MAX_ACTIVITIES=3)
def test_a_plan_cannot_make_the_scheduler_write_without_bound(world):
    client, admin = Client(), auth("Admin")
    body = careplan(times=tuple(f"{h:02d}:{m:02d}:00" for h in range(24) for m in (0, 30)))
    body["activity"] = body["activity"] * 10
    written = client.post(
        "/fhir/CarePlan", json.dumps(body), content_type=FHIR, HTTP_PREFER="return=OperationOutcome", **admin
    )
    assert written.status_code == 201
    plan_id = written["Location"].split("/CarePlan/")[1].split("/")[0]
    assert any("only the first 3" in i["diagnostics"] for i in written.json()["issue"])
    schedule_now()
    assert len(tasks(plan_id)) == 50


def test_materialize_answers_as_the_callers_reads(world):
    client, admin = Client(), auth("Admin")
    ruleset.replace_rules([
        *RULES,
        {"name": "research", "role": "Researcher", "resource": ["CarePlan", "Task"],
         "operation": ["read", "search", "materialize"], "validator": "Allowed",
         "property-filters": [{"path": "Task.description", "action": "remove"}, {"path": "Task.for", "action": "remove"}]},
    ])  # fmt: skip
    rules.forget_rules()
    plan_id = write(client, admin, careplan()).json()["id"]
    researcher = auth("Researcher")
    for dry in (True, False):
        params = {"resourceType": "Parameters", "parameter": [{"name": "dry-run", "valueBoolean": dry}]}
        answer = client.post(
            f"/fhir/CarePlan/{plan_id}/$materialize", json.dumps(params), content_type=FHIR, **researcher
        )
        assert answer.status_code == 200, answer.content
        shown = [e["resource"] for e in answer.json()["entry"]]
        assert shown and all("description" not in t and "for" not in t for t in shown)
        assert "Patient/p1" not in answer.content.decode()
    assert len(tasks(plan_id)) == len(shown)


def test_a_scheduled_tasks_plan_and_patient_cannot_be_changed_by_clients(world):
    client, admin = Client(), auth("Admin")
    mine = write(client, admin, careplan("p1")).json()["id"]
    theirs = write(client, admin, careplan("p2")).json()["id"]
    schedule_now()
    task = tasks(mine)[0]
    patient = auth("Patient", "Patient/p1")
    moved = {**task, "basedOn": [{"reference": f"CarePlan/{theirs}"}]}
    assert (
        client.put(f"/fhir/Task/{task['id']}", json.dumps(moved), content_type=FHIR, **patient).status_code
        == 422
    )
    assert (
        client.put(f"/fhir/Task/{task['id']}", json.dumps(moved), content_type=FHIR, **admin).status_code
        == 422
    )


def test_materialize_refuses_windows_off_the_calendar_and_url_parameters(world):
    client, admin = Client(), auth("Admin")
    plan_id = write(client, admin, careplan()).json()["id"]
    params = {"resourceType": "Parameters", "parameter": [
        {"name": "start", "valueDateTime": "0001-01-01T00:00:00Z"}, {"name": "end", "valueDateTime": "0001-01-05T00:00:00Z"}]}  # fmt: skip
    answer = client.post(
        f"/fhir/CarePlan/{plan_id}/$materialize", json.dumps(params), content_type=FHIR, **admin
    )
    assert answer.status_code == 400 and answer.json()["resourceType"] == "OperationOutcome"
    url = client.post(f"/fhir/CarePlan/{plan_id}/$materialize?dry-run=true", "", content_type=FHIR, **admin)
    assert url.status_code == 400
    assert tasks(plan_id) == []
