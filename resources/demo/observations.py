"""Vital-sign, laboratory and social-history Observations for one encounter.

Values come from a small physiology model: growth curves for children, a per-patient adult height and
body-mass index, and shifts for the patient's conditions (hypertension raises blood pressure,
diabetes glucose and HbA1c, hyperlipidemia the lipid panel), so searches by value find the patients
a clinician would expect.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from . import codes
from .codes import Measure
from .fhir import concept, date_time, decimal, instant, quantity, ref
from .reference import Site, Staff

VITAL_SIGNS = ("vital-signs", "Vital Signs")
LABORATORY = ("laboratory", "Laboratory")
SOCIAL_HISTORY = ("social-history", "Social History")

# Median length/height (cm) and BMI by age in years, after the WHO growth charts, to age 18.
_AGES = (0, 0.5, 1, 2, 3, 4, 5, 6, 8, 10, 12, 14, 16, 18)
_HEIGHT = {
    "male": (50, 67, 76, 87, 96, 103, 110, 116, 128, 138, 149, 163, 173, 176),
    "female": (49, 65, 74, 86, 95, 102, 109, 115, 127, 138, 151, 160, 163, 163),
}
_BMI = (13.4, 17.3, 17.2, 16.3, 15.9, 15.5, 15.4, 15.3, 15.8, 16.6, 17.8, 19.2, 20.5, 21.5)
_HEAD = ((0, 35.0), (0.5, 43.5), (1, 46.0), (2, 48.5), (3, 49.5))


def _curve(ages: tuple, values: tuple, age: float) -> float:
    if age >= ages[-1]:
        return values[-1]
    i = bisect.bisect_right(ages, age) - 1
    span = ages[i + 1] - ages[i]
    return values[i] + (values[i + 1] - values[i]) * (age - ages[i]) / span


@dataclass
class Physiology:
    """What stays the same for a patient across encounters."""

    gender: str
    birth: date
    adult_height: float
    adult_bmi: float
    conditions: set[str] = field(default_factory=set)  # SNOMED codes the patient has or will have

    def has(self, *snomed: str) -> bool:
        return any(code in self.conditions for code in snomed)

    def age(self, when: datetime) -> float:
        return (when.date() - self.birth).days / 365.25


@dataclass
class Visit:
    """Where observations are recorded: who, which encounter, by whom, and what kind of visit.

    References are built afresh for every resource (no dict is shared between resources), because
    process_bundle rewrites `urn:uuid:` references in place.
    """

    subject: str  # fullUrl of the Patient
    encounter: str  # fullUrl of the Encounter
    nurse: Staff
    lab: Site  # the performing organisation of lab tests
    start: datetime
    end: datetime
    sick: bool  # a visit for an acute problem: fever, pain and infection markers are likelier
    emergency: bool = False  # injuries hurt more
    problem: str | None = None  # SNOMED code of the acute problem the visit is for


def _obs(
    visit: Visit, category: tuple[str, str], code: tuple[str, str], when: datetime, performer: Staff | Site
) -> dict:
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [concept(codes.OBSERVATION_CATEGORY, *category)],
        "code": concept(codes.LOINC, code[0], code[1]),
        "subject": ref(visit.subject),
        "encounter": ref(visit.encounter),
        "effectiveDateTime": date_time(when),
        "performer": [performer.reference],
    }


def _value(measure: Measure, raw: float) -> object:
    return decimal(raw, measure.places)


def _measured(
    visit: Visit,
    category: tuple[str, str],
    measure: Measure,
    raw: float,
    when: datetime,
    performer: Staff | Site,
) -> dict:
    body = _obs(visit, category, (measure.code, measure.display), when, performer)
    body["valueQuantity"] = quantity(_value(measure, raw), measure.unit)
    return body


def _with_range(body: dict, measure: Measure) -> dict:
    """Add the reference range and an H/L/N interpretation for lab measures that have a range."""
    if measure.low is None and measure.high is None:
        return body
    value = float(body["valueQuantity"]["value"])
    flag = "N"
    if measure.low is not None and value < measure.low:
        flag = "L"
    elif measure.high is not None and value > measure.high:
        flag = "H"
    reference: dict = {}
    if measure.low is not None:
        reference["low"] = quantity(decimal(measure.low, measure.places), measure.unit)
    if measure.high is not None:
        reference["high"] = quantity(decimal(measure.high, measure.places), measure.unit)
    body["interpretation"] = [concept(codes.INTERPRETATION, flag, codes.INTERPRETATIONS[flag])]
    body["referenceRange"] = [reference]
    return body


def vital_signs(
    rng: random.Random, body: Physiology, visit: Visit, when: datetime, *, full: bool
) -> list[dict]:
    """Heart rate, blood pressure, respiratory rate, temperature and SpO2; with `full` also height,
    weight and BMI (and head circumference under 3); pain scores at sick visits."""
    age = body.age(when)
    fever = visit.sick and rng.random() < 0.4
    child = age < 18
    out = []

    if age < 1:
        heart, breaths = 130.0, 35.0
    elif age < 5:
        heart, breaths = 110.0, 25.0
    elif age < 12:
        heart, breaths = 90.0, 20.0
    else:
        heart, breaths = (78.0, 16.0) if child else (72.0, 15.0)
    heart += rng.gauss(0, 9) + (12 if fever else 0) + (15 if body.has(codes.ATRIAL_FIBRILLATION) else 0)
    short_of_breath = visit.problem == codes.PNEUMONIA or (visit.sick and body.has(codes.ASTHMA))
    breaths += rng.gauss(0, 2) + (4 if short_of_breath else 0)
    out.append(_measured(visit, VITAL_SIGNS, codes.HEART_RATE, heart, when, visit.nurse))

    if child:
        systolic, diastolic = 90 + 1.2 * age, 55 + 0.6 * age
    else:
        systolic, diastolic = 112 + 0.45 * max(age - 25, 0), 72 + 0.12 * max(age - 25, 0)
    if body.has(codes.HYPERTENSION):
        systolic, diastolic = systolic + 24, diastolic + 12
    if age >= 3:
        bp = _obs(visit, VITAL_SIGNS, codes.BP_PANEL, when, visit.nurse)
        bp["component"] = [
            {
                "code": concept(codes.LOINC, m.code, m.display),
                "valueQuantity": quantity(_value(m, v), m.unit),
            }
            for m, v in (
                (codes.SYSTOLIC, systolic + rng.gauss(0, 9)),
                (codes.DIASTOLIC, diastolic + rng.gauss(0, 6)),
            )
        ]
        out.append(bp)

    out.append(_measured(visit, VITAL_SIGNS, codes.RESPIRATORY_RATE, max(breaths, 8), when, visit.nurse))
    temperature = rng.uniform(38.0, 39.6) if fever else rng.gauss(36.8, 0.25)
    out.append(_measured(visit, VITAL_SIGNS, codes.BODY_TEMPERATURE, temperature, when, visit.nurse))
    saturation = 98 + rng.gauss(0, 1) - (3 if short_of_breath else 0)
    out.append(
        _measured(visit, VITAL_SIGNS, codes.OXYGEN_SATURATION, min(saturation, 100), when, visit.nurse)
    )

    if full:
        out += _body_size(rng, body, visit, when, age)
    if visit.sick:
        pain = rng.randint(3, 9) if visit.emergency else rng.randint(0, 6)
        out.append(_measured(visit, VITAL_SIGNS, codes.PAIN_SCORE, pain, when, visit.nurse))
    return out


def _body_size(rng: random.Random, body: Physiology, visit: Visit, when: datetime, age: float) -> list[dict]:
    curve = _HEIGHT["female" if body.gender == "female" else "male"]
    height = _curve(_AGES, curve, age) * body.adult_height / curve[-1]
    if age > 60:
        height -= 0.1 * (age - 60)  # people shrink a little with age
    height = round(height + rng.gauss(0, 0.3), 1)
    if age < 18:
        bmi = _curve(_AGES, _BMI, age) * (1 + (body.adult_bmi - 25) / 60)
    else:
        bmi = body.adult_bmi
    weight = round(bmi * (height / 100) ** 2 + rng.gauss(0, 0.6 if age >= 2 else 0.1), 1)
    # BMI from the rounded height and weight, so the three observations agree.
    bmi = weight / (height / 100) ** 2
    out = [
        _measured(visit, VITAL_SIGNS, codes.BODY_HEIGHT, height, when, visit.nurse),
        _measured(visit, VITAL_SIGNS, codes.BODY_WEIGHT, weight, when, visit.nurse),
    ]
    if age >= 2:
        out.append(_measured(visit, VITAL_SIGNS, codes.BMI, bmi, when, visit.nurse))
    if age < 3:
        head = _curve(tuple(a for a, _ in _HEAD), tuple(v for _, v in _HEAD), age) + rng.gauss(0, 0.8)
        out.append(_measured(visit, VITAL_SIGNS, codes.HEAD_CIRCUMFERENCE, head, when, visit.nurse))
    return out


def _lab_value(rng: random.Random, body: Physiology, measure: Measure, age: float, sick: bool) -> float:
    female = body.gender == "female"
    diabetic, prediabetic = body.has(codes.DIABETES), body.has(codes.PREDIABETES)
    lipids = body.has(codes.HYPERLIPIDEMIA)
    g = rng.gauss
    match measure.code:
        case "2339-0":
            return g(150, 30) if diabetic else g(110, 8) if prediabetic else g(88, 8)
        case "4548-4":
            return g(7.6, 0.9) if diabetic else g(6.0, 0.2) if prediabetic else g(5.2, 0.25)
        case "2093-3":
            return g(240, 25) if lipids else g(185, 25)
        case "2571-8":
            return max(g(200, 50) if lipids else g(110, 35), 35) + (30 if diabetic else 0)
        case "2085-9":
            return g(55, 10) + (8 if female else 0) - (8 if lipids else 0)
        case "18262-6":
            return g(160, 25) if lipids else g(105, 20)
        case "718-7":
            return g(13.5, 1.0) if female else g(15.0, 1.0)
        case "4544-3":
            return g(40.5, 2.5) if female else g(45.0, 2.5)
        case "6690-2":
            return max(g(7.0, 1.5) + (4.5 if sick else 0), 2.5)
        case "789-8":
            return g(4.5, 0.3) if female else g(5.0, 0.3)
        case "777-3":
            return g(250, 50)
        case "2160-0":
            return (g(0.8, 0.12) if female else g(1.0, 0.15)) + 0.004 * max(age - 50, 0)
        case "3094-0":
            return g(14, 3)
        case "2951-2":
            return g(140, 2)
        case "2823-3":
            return g(4.2, 0.3)
        case "2075-0":
            return g(102, 2)
        case "2028-9":
            return g(25, 2)
        case "17861-6":
            return g(9.5, 0.3)
    raise ValueError(f"no model for {measure.code}")


def lab_panels(
    rng: random.Random, body: Physiology, visit: Visit, when: datetime, *, admitted: bool
) -> list[dict]:
    """Which panels are drawn depends on the visit and the patient's conditions."""
    age = body.age(when)
    panels: list[Measure] = []
    if admitted or rng.random() < 0.5:
        panels += codes.METABOLIC_PANEL
    if admitted or visit.sick or rng.random() < 0.4:
        panels += codes.BLOOD_COUNT
    if age >= 18 and rng.random() < (
        0.6 if body.has(codes.HYPERLIPIDEMIA, codes.DIABETES, codes.CORONARY_HEART_DISEASE) else 0.25
    ):
        panels += codes.LIPID_PANEL
    if age >= 18 and rng.random() < (0.8 if body.has(codes.DIABETES, codes.PREDIABETES) else 0.05):
        panels.append(codes.HBA1C)
    issued = when + timedelta(minutes=rng.randint(90, 360))
    out = []
    for measure in panels:
        obs = _measured(
            visit, LABORATORY, measure, _lab_value(rng, body, measure, age, visit.sick), when, visit.lab
        )
        obs["issued"] = instant(issued)
        out.append(_with_range(obs, measure))
    return out


def smoking_status(rng: random.Random, visit: Visit, when: datetime) -> dict:
    weights = [w for _, _, w in codes.SMOKING_ANSWERS]
    code, display, _ = rng.choices(codes.SMOKING_ANSWERS, weights=weights)[0]
    obs = _obs(visit, SOCIAL_HISTORY, codes.SMOKING_STATUS, when, visit.nurse)
    obs["valueCodeableConcept"] = concept(codes.SNOMED, code, display)
    return obs
