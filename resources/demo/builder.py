"""The transaction entries for one demo patient: Patient, Encounters, Observations, Conditions,
MedicationRequests and CarePlans, all POSTed with `urn:uuid:` fullUrls that reference each other.

Patient `number` of seed `seed` draws from its own generator, seeded with both, so a patient's
content does not depend on how many patients are generated or how they are batched. The history
ends at AS_OF, a fixed date, so the output never depends on the day it is generated.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from . import clinical, codes
from .fhir import concept, date_time, new_uuid, post, ref, zone
from .observations import Physiology, Visit, lab_panels, smoking_status, vital_signs
from .patient import build_patient
from .reference import ORGANIZATIONS, Site, Staff, sites

AS_OF = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)
HISTORY_YEARS = 12
ENCOUNTERS = (3, 12)  # per patient, inclusive
# Share of patients per organisation (the US clinic also sends its emergencies to its parent).
ORG_WEIGHTS = {"org-1": 15, "org-2": 25, "org-3": 20, "org-4": 20, "org-5": 20}


@dataclass
class Planned:
    """An encounter decided before any resource is written, plus what happens at it."""

    url: str
    cls: str  # AMB, EMER or IMP
    kind: tuple[str, str]  # SNOMED encounter type
    start: datetime
    end: datetime
    doctor: Staff
    site: Site  # the organisation that provides it
    acute: tuple | None = None  # an entry of codes.ACUTE_*
    acute_url: str | None = None
    diagnosed: list[tuple[codes.Chronic, str]] = field(default_factory=list)  # (condition, fullUrl)
    prescriptions: list[tuple[codes.Medication, str, str]] = field(
        default_factory=list
    )  # (med, status, reason url)
    care_plans: list[tuple[codes.CarePlanKind, list[str]]] = field(default_factory=list)

    @property
    def sick(self) -> bool:
        return self.kind == codes.SYMPTOM_VISIT or self.cls != "AMB"


def _urn(rng: random.Random) -> str:
    return f"urn:uuid:{new_uuid(rng)}"


def _timeline(rng: random.Random, body: Physiology, site: Site, gp: Staff) -> list[Planned]:
    tz = zone(site.org.utc_offset)
    hospital = sites()[site.hospital.id]
    last_day = (AS_OF - timedelta(days=8)).astimezone(tz).date()
    first_day = max(body.birth + timedelta(days=14), last_day.replace(year=last_day.year - HISTORY_YEARS))
    span = (last_day - first_day).days
    count = rng.randint(*ENCOUNTERS)
    # The last visit is a check-up in the final year, where care plans were last reviewed.
    days = sorted(first_day + timedelta(days=rng.randrange(span + 1)) for _ in range(count - 1))
    recent = max(first_day, last_day - timedelta(days=365))
    days.append(recent + timedelta(days=rng.randrange((last_day - recent).days + 1)))
    days.sort()
    out = []
    for position, day in enumerate(days):
        roll = rng.random()
        final = position == len(days) - 1
        if final or roll >= 0.2:
            cls = "AMB"
            pick = rng.random()
            kind = (
                codes.CHECK_UP
                if final or pick < 0.5
                else codes.SYMPTOM_VISIT
                if pick < 0.8
                else codes.FOLLOW_UP
            )
            start = datetime(day.year, day.month, day.day, 8, tzinfo=tz) + timedelta(
                minutes=15 * rng.randrange(36)
            )
            end = start + timedelta(minutes=rng.randint(15, 45))
            doctor = gp if kind == codes.CHECK_UP and rng.random() < 0.7 else rng.choice(site.doctors)
            provider = site
        else:
            cls = "EMER" if roll < 0.12 else "IMP"
            kind = codes.EMERGENCY if cls == "EMER" else codes.ADMISSION
            start = datetime(day.year, day.month, day.day, tzinfo=tz) + timedelta(
                minutes=rng.randrange(24 * 60)
            )
            if cls == "EMER":
                end = start + timedelta(minutes=rng.randint(120, 480))
            else:
                end = start + timedelta(days=rng.randint(2, 6), hours=rng.randint(2, 10))
            doctor = rng.choice(hospital.doctors)
            provider = hospital
        out.append(Planned(_urn(rng), cls, kind, start, end, doctor, provider))
    return out


def _band_risk(condition: codes.Chronic, age: float) -> float:
    risk = 0.0
    for minimum, probability in condition.risk:
        if age >= minimum:
            risk = probability
    return risk


def _plan_conditions(rng: random.Random, body: Physiology, timeline: list[Planned]) -> None:
    """Decide chronic and acute problems, their prescriptions and care plans, onto the timeline."""
    age_now = body.age(timeline[-1].start)
    chosen: list[tuple[codes.Chronic, int]] = []
    for chronic in (*codes.CHRONIC, codes.OBESITY):
        if chronic is codes.OBESITY:
            drawn = body.adult_bmi >= 30
        else:
            drawn = rng.random() < _band_risk(chronic, age_now)
        if chronic.code == codes.PREDIABETES and body.has(codes.DIABETES):
            drawn = False
        if not drawn:
            continue
        minimum = chronic.risk[0][0]
        eligible = [i for i, e in enumerate(timeline) if e.cls == "AMB" and body.age(e.start) >= minimum]
        if not eligible:
            continue
        chosen.append((chronic, rng.choice(eligible)))
        body.conditions.add(chronic.code)

    plans: dict[str, tuple[int, list[str]]] = {}
    for chronic, at in chosen:
        url = _urn(rng)
        timeline[at].diagnosed.append((chronic, url))
        later = [i for i in range(at + 1, len(timeline)) if timeline[i].cls == "AMB"]
        renewals = sorted(rng.sample(later, min(len(later), rng.randint(0, 2))))
        for code, probability in chronic.medications:
            if rng.random() >= probability:
                continue
            visits = [at, *renewals]
            for n, i in enumerate(visits):
                status = "active" if n == len(visits) - 1 else "completed"
                timeline[i].prescriptions.append((codes.MEDICATIONS[code], status, url))
        if chronic.care_plan:
            first, addresses = plans.get(chronic.care_plan, (at, []))
            plans[chronic.care_plan] = (min(first, at), [*addresses, url])
    for key, (at, addresses) in plans.items():
        timeline[at].care_plans.append((codes.CARE_PLANS[key], addresses))

    for e in timeline:
        if e.cls == "IMP":
            e.acute = next(a for a in codes.ACUTE_EMERGENCY if a[0] == codes.PNEUMONIA)
            if rng.random() < 0.4:
                e.acute = rng.choice(codes.ACUTE_EMERGENCY)
        elif e.cls == "EMER":
            e.acute = rng.choice(codes.ACUTE_EMERGENCY)
        elif e.kind == codes.SYMPTOM_VISIT and rng.random() < 0.75:
            e.acute = rng.choice(codes.ACUTE_AMBULATORY)
        if e.acute:
            e.acute_url = _urn(rng)
            code, _, rx, days = e.acute
            if rx:
                abated = e.start + timedelta(days=days)
                e.prescriptions.append(
                    (codes.MEDICATIONS[rx], "completed" if abated < AS_OF else "active", e.acute_url)
                )


def _encounter(e: Planned, patient_url: str) -> dict:
    body = {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": codes.ACT_CODE, "code": e.cls, "display": codes.ENCOUNTER_CLASSES[e.cls]},
        "type": [concept(codes.SNOMED, *e.kind)],
        "subject": ref(patient_url),
        "participant": [
            {
                "type": [concept(codes.PARTICIPATION_TYPE, "PPRF", "primary performer")],
                "period": {"start": date_time(e.start), "end": date_time(e.end)},
                "individual": e.doctor.reference,
            }
        ],
        "period": {"start": date_time(e.start), "end": date_time(e.end)},
        "serviceProvider": e.site.reference,
    }
    if e.acute_url:
        body["reasonReference"] = [ref(e.acute_url, e.acute[1])]
    return body


def _observations(rng: random.Random, body: Physiology, e: Planned, visit: Visit) -> list[dict]:
    out = []
    duration = e.end - e.start
    if e.cls == "IMP":
        # Inpatients get vital signs every day of the stay and bloods on admission and discharge.
        days = min(duration.days, 3)
        for day in range(days + 1):
            when = e.start + timedelta(days=day, minutes=rng.randint(5, 60))
            out += vital_signs(rng, body, visit, when, full=day == 0)
        out += lab_panels(rng, body, visit, e.start + timedelta(minutes=rng.randint(20, 90)), admitted=True)
        out += lab_panels(rng, body, visit, e.start + timedelta(days=days, hours=1), admitted=True)
        return out
    vitals_at = e.start + duration * 0.15
    full = e.kind in (codes.CHECK_UP, codes.FOLLOW_UP) or rng.random() < 0.25
    out += vital_signs(rng, body, visit, vitals_at, full=full)
    lab_chance = 0.7 if e.cls == "EMER" else {codes.CHECK_UP: 0.7, codes.FOLLOW_UP: 0.8}.get(e.kind, 0.3)
    if rng.random() < lab_chance:
        out += lab_panels(rng, body, visit, e.start + duration * 0.6, admitted=False)
    return out


def patient_entries(seed: int, number: int) -> list[dict]:
    """All transaction entries (POST) for patient `number` (1-based) of `seed`, Patient first."""
    rng = random.Random(f"demo patient {seed}:{number}")
    org_ids = [o.id for o in ORGANIZATIONS]
    site = sites()[rng.choices(org_ids, weights=[ORG_WEIGHTS[o] for o in org_ids])[0]]
    patient_url = _urn(rng)
    tz = zone(site.org.utc_offset)
    patient, body, gp = build_patient(rng, seed, number, site, AS_OF.astimezone(tz).date())
    timeline = _timeline(rng, body, site, gp)
    _plan_conditions(rng, body, timeline)

    entries = [post(patient_url, patient)]
    for index, e in enumerate(timeline):
        nurse = rng.choice(e.site.nurses)
        entries.append(post(e.url, _encounter(e, patient_url)))
        if e.acute:
            code, display, _, days = e.acute
            abated = e.start + timedelta(days=days)
            condition = clinical.condition(
                code,
                display,
                subject=ref(patient_url),
                encounter=ref(e.url),
                recorder=e.doctor.reference,
                onset=e.start,
                abated=abated if abated < AS_OF else None,
                problem_list=False,
            )
            entries.append(post(e.acute_url, condition))
        for chronic, url in e.diagnosed:
            condition = clinical.condition(
                chronic.code,
                chronic.display,
                subject=ref(patient_url),
                encounter=ref(e.url),
                recorder=e.doctor.reference,
                onset=e.start,
                abated=None,
                problem_list=True,
            )
            entries.append(post(url, condition))
        visit = Visit(
            subject=patient_url,
            encounter=e.url,
            nurse=nurse,
            lab=e.site,
            start=e.start,
            end=e.end,
            sick=e.sick,
            emergency=e.cls == "EMER",
            problem=e.acute[0] if e.acute else None,
        )
        observations = _observations(rng, body, e, visit)
        if index == 0 and body.age(e.start) >= 12:
            observations.append(smoking_status(rng, visit, e.start + (e.end - e.start) * 0.15))
        entries += [post(_urn(rng), obs) for obs in observations]
        for medication, status, reason in e.prescriptions:
            request = clinical.medication_request(
                medication,
                status=status,
                subject=ref(patient_url),
                encounter=ref(e.url),
                requester=e.doctor.reference,
                authored=e.end - timedelta(minutes=5),
                reason=ref(reason),
            )
            entries.append(post(_urn(rng), request))
        for kind, addresses in e.care_plans:
            # Activities run from the last review (the final check-up) for six to twelve months.
            review = timeline[-1].end
            plan = clinical.care_plan(
                kind,
                subject=ref(patient_url),
                encounter=ref(e.url),
                author=gp.reference,
                care_team=ref(f"CareTeam/{site.care_team}", f"{site.org.name} care team"),
                addresses=[ref(url) for url in addresses],
                created=e.end - timedelta(minutes=2),
                bounds=(review, review + timedelta(days=rng.randint(180, 365))),
            )
            entries.append(post(_urn(rng), plan))
    return entries
