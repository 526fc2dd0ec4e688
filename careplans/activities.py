"""Which CarePlans are materialised, and what each schedulable activity of one says
(https://hl7.org/fhir/R4/careplan.html, issue 12's contract).

- A plan is eligible when its `status` is `active`, its `intent` is neither `proposal` nor `option`,
  and it carries the tag `http://fhirplatform.org/CodeSystem/careplan-scheduling|materialize` (or
  every active plan is, with FHIR_CAREPLAN_ALL_ACTIVE).
- An activity has a `detail` or a `reference` (cpl-3). A detail counts unless its status is
  cancelled, stopped, completed, entered-in-error or on-hold, or `doNotPerform` is true; its
  `scheduledTiming` repeats, its `scheduledPeriod` is one occurrence, its `scheduledString` cannot
  be computed (a warning). A reference to an active MedicationRequest of the plan's own subject uses
  the `timing` of every `dosageInstruction`; any other (missing, inactive, another patient's) is one
  and the same warning.
- A plan schedules at most FHIR_CAREPLAN_MAX_ACTIVITIES activities (the rest: a warning).

Pure functions over JSON: the caller looks up the referenced MedicationRequests.
"""

from __future__ import annotations

from dataclasses import dataclass, field

TAG_SYSTEM = "http://fhirplatform.org/CodeSystem/careplan-scheduling"
TAG_CODE = "materialize"
_IDLE_DETAIL = frozenset({"cancelled", "stopped", "completed", "entered-in-error", "on-hold"})


@dataclass(frozen=True)
class Activity:
    key: str  # the activity's id, else its index
    timings: tuple[dict, ...] = ()  # Timing JSONs whose occurrences are Tasks
    period: dict | None = None  # a scheduledPeriod: one Task over it
    focus: dict | None = None  # a Reference for Task.focus
    description: str = ""


@dataclass
class Plan:
    activities: list[Activity] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def tagged(plan: dict) -> bool:
    return any(
        tag.get("system") == TAG_SYSTEM and tag.get("code") == TAG_CODE
        for tag in (plan.get("meta") or {}).get("tag") or []
    )


def eligible(plan: dict, *, all_active: bool) -> bool:
    return (
        plan.get("status") == "active"
        and plan.get("intent") not in ("proposal", "option")
        and (all_active or tagged(plan))
    )


def medication_requests(plan: dict) -> list[str]:
    """The `MedicationRequest/id` references of the plan's activities (to look up)."""
    found = []
    for activity in plan.get("activity") or []:
        ref = ((activity.get("reference") or {}).get("reference")) or ""
        if ref.startswith("MedicationRequest/") and ref.count("/") == 1:
            found.append(ref)
    return found


def activities(plan: dict, requests: dict[str, dict], *, most: int = 100) -> Plan:
    """The schedulable activities of `plan` (at most `most`); `requests` holds the referenced
    MedicationRequests (by "MedicationRequest/id") that exist."""
    out = Plan()
    listed = plan.get("activity") or []
    if len(listed) > most:
        out.warnings.append(
            f"CarePlan.activity holds {len(listed)} activities; only the first {most} are scheduled"
        )
        listed = listed[:most]
    subject = (plan.get("subject") or {}).get("reference") or ""
    for index, activity in enumerate(listed):
        key = str(activity.get("id") or index)
        where = f"CarePlan.activity[{index}]"
        detail, reference = activity.get("detail"), activity.get("reference")
        if detail is not None:
            found = _detail(key, where, detail, out.warnings)
        elif reference is not None:
            found = _reference(
                key, where, reference, requests.get(reference.get("reference") or ""), subject, out.warnings
            )
        else:
            found = None
        if found is not None:
            out.activities.append(found)
    return out


def _detail(key: str, where: str, detail: dict, warnings: list[str]) -> Activity | None:
    if detail.get("status") in _IDLE_DETAIL or detail.get("doNotPerform") is True:
        return None
    focus = detail.get("productReference")
    if focus is None and detail.get("instantiatesCanonical"):
        focus = {"reference": detail["instantiatesCanonical"][0]}
    description = (
        detail.get("description") or _text(detail.get("code")) or _text(detail.get("productCodeableConcept"))
    )
    if "scheduledTiming" in detail:
        return Activity(key, timings=(detail["scheduledTiming"],), focus=focus, description=description)
    if "scheduledPeriod" in detail:
        return Activity(key, period=detail["scheduledPeriod"], focus=focus, description=description)
    if "scheduledString" in detail:
        warnings.append(
            f"{where}.detail.scheduledString '{detail['scheduledString']}' cannot be computed: no Tasks "
            "are made for it"
        )
    return None


def _reference(
    key, where, reference: dict, request: dict | None, subject: str, warnings: list[str]
) -> Activity | None:
    ref = reference.get("reference") or ""
    if not ref.startswith("MedicationRequest/"):
        return None  # a reference to another kind of request schedules nothing by itself
    if (
        request is None
        or request.get("status") != "active"
        or not subject
        or ((request.get("subject") or {}).get("reference")) != subject
    ):
        # One answer for a request that is missing, inactive or another patient's: the plan's
        # writer learns nothing of a request it may not be able to read, and a plan copies nothing
        # from another patient's record into its Tasks.
        warnings.append(
            f"{where}.reference {ref} is not an active MedicationRequest of the plan's subject: not scheduled"
        )
        return None
    timings = tuple(
        dosage["timing"]
        for dosage in request.get("dosageInstruction") or []
        if isinstance(dosage.get("timing"), dict)
    )
    if not timings:
        warnings.append(f"{where}.reference {ref} has no dosageInstruction.timing to schedule")
        return None
    description = _text(request.get("medicationCodeableConcept")) or next(
        (d.get("text") for d in request.get("dosageInstruction") or [] if d.get("text")), ""
    )
    return Activity(key, timings=timings, focus={"reference": ref}, description=description or "Medication")


def _text(concept: dict | None) -> str:
    if not concept:
        return ""
    if concept.get("text"):
        return concept["text"]
    for coding in concept.get("coding") or []:
        if coding.get("display"):
            return coding["display"]
    return ""
