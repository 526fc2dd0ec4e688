"""Condition, MedicationRequest and CarePlan resources for the demo builder.

Each function builds one resource body from already-decided facts (codes, dates, references); the
decisions themselves (who gets what, when) are taken in builder.py.
"""

from __future__ import annotations

from datetime import datetime

from . import codes
from .codes import Activity, CarePlanKind, Medication
from .fhir import clinical_concept, concept, date_time


def condition(
    code: str,
    display: str,
    *,
    subject: dict,
    encounter: dict,
    recorder: dict,
    onset: datetime,
    abated: datetime | None,
    problem_list: bool,
) -> dict:
    """An active problem-list entry, or an encounter diagnosis that resolved at `abated`."""
    status = ("resolved", "Resolved") if abated else ("active", "Active")
    category = (
        ("problem-list-item", "Problem List Item")
        if problem_list
        else ("encounter-diagnosis", "Encounter Diagnosis")
    )
    body = {
        "resourceType": "Condition",
        "clinicalStatus": concept(codes.CONDITION_CLINICAL, *status),
        "verificationStatus": concept(codes.CONDITION_VERIFICATION, "confirmed", "Confirmed"),
        "category": [concept(codes.CONDITION_CATEGORY, *category)],
        "code": concept(codes.SNOMED, code, display),
        "subject": subject,
        "encounter": encounter,
        "onsetDateTime": date_time(onset),
        "recordedDate": date_time(onset),
        "recorder": recorder,
    }
    if abated:
        body["abatementDateTime"] = date_time(abated)
    return body


def _dosage(medication: Medication) -> dict:
    unit_words = {"{tbl}": "tablet", "{cap}": "capsule", "{puff}": "puff", "[IU]": "unit"}
    amount = 10 if medication.dose == "[IU]" else 1
    noun = unit_words[medication.dose] + ("s" if amount > 1 else "")
    how_often = {1: "once", 2: "twice", 3: "three times", 4: "four times"}[medication.frequency]
    text = f"{amount} {noun} {how_often} a day"
    if medication.as_needed:
        text = f"Up to {text}, as needed"
    dosage: dict = {
        "sequence": 1,
        "text": text,
        "timing": {
            "repeat": {
                "frequency": medication.frequency,
                "period": medication.period,
                "periodUnit": medication.period_unit,
            }
        },
        "asNeededBoolean": medication.as_needed,
        "doseAndRate": [
            {
                "type": concept(codes.DOSE_RATE_TYPE, "ordered", "Ordered"),
                "doseQuantity": {
                    "value": amount,
                    "unit": unit_words[medication.dose],
                    "system": codes.UCUM,
                    "code": medication.dose,
                },
            }
        ],
    }
    if medication.oral:
        dosage["route"] = concept(codes.SNOMED, *codes.ORAL_ROUTE)
    return dosage


def medication_request(
    medication: Medication,
    *,
    status: str,
    subject: dict,
    encounter: dict,
    requester: dict,
    authored: datetime,
    reason: dict,
) -> dict:
    return {
        "resourceType": "MedicationRequest",
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": concept(codes.RXNORM, medication.code, medication.display),
        "subject": subject,
        "encounter": encounter,
        "authoredOn": date_time(authored),
        "requester": requester,
        "reasonReference": [reason],
        "dosageInstruction": [_dosage(medication)],
    }


def _activity(activity: Activity, *, start: datetime, end: datetime, performer: dict) -> dict:
    detail: dict = {"kind": activity.kind}
    if activity.code:
        detail["code"] = clinical_concept(*activity.code)
    else:
        detail["code"] = {"text": activity.text}
    detail.update(
        {
            "status": "scheduled",
            "scheduledTiming": {
                "repeat": {
                    "boundsPeriod": {"start": date_time(start), "end": date_time(end)},
                    "frequency": activity.frequency,
                    "period": activity.period,
                    "periodUnit": activity.period_unit,
                }
            },
            "performer": [performer],
            "description": activity.text,
        }
    )
    return {"detail": detail}


def care_plan(
    kind: CarePlanKind,
    *,
    subject: dict,
    encounter: dict,
    author: dict,
    care_team: dict,
    addresses: list[dict],
    created: datetime,
    bounds: tuple[datetime, datetime],
) -> dict:
    """An active plan whose activities are scheduled within `bounds`: requests (ServiceRequest) are
    carried out by the author, self-care tasks (Task) by the patient."""
    start, end = bounds
    return {
        "resourceType": "CarePlan",
        "status": "active",
        "intent": "plan",
        "category": [concept(codes.SNOMED, *kind.category)],
        "title": kind.title,
        "subject": subject,
        "encounter": encounter,
        "period": {"start": date_time(created)},
        "created": date_time(created),
        "author": author,
        "careTeam": [care_team],
        "addresses": addresses,
        "activity": [
            # Copies: a dict may appear only once, since process_bundle rewrites references in place.
            _activity(a, start=start, end=end, performer=dict(subject if a.kind == "Task" else author))
            for a in kind.activities
        ],
    }
