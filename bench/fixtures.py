"""Request bodies for the benchmark: valid FHIR R4 resources and transaction Bundles.

Everything is generated from a seeded `random.Random`, so two runs send the same kinds of data. The
bodies are written to files that the wrk Lua scripts read; the scripts only add ids or fresh urn:uuids.
The server validates strictly against the R4 StructureDefinitions, so every body here must be valid R4.
"""

from __future__ import annotations

import random
import uuid

import simplejson

FAMILIES = ["Smith", "Jones", "García", "Müller", "Nguyen", "Okafor", "Rossi", "Kowalski", "Tanaka", "Silva"]
GIVENS = ["Ana", "Ben", "Chloé", "Dmitri", "Eva", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemi", "Liam"]
CITIES = ["Springfield", "Riverton", "Lakeside", "Hillview", "Fairmont"]
ORG_WORDS = ["General", "Community", "University", "Children's", "Memorial", "Valley"]
LOINC = [
    ("8867-4", "Heart rate", "/min", 50, 120),
    ("8310-5", "Body temperature", "Cel", 35.5, 39.5),
    ("29463-7", "Body weight", "kg", 3, 140),
    ("8302-2", "Body height", "cm", 45, 200),
    ("2339-0", "Glucose [Mass/volume] in Blood", "mg/dL", 60, 250),
    ("8480-6", "Systolic blood pressure", "mm[Hg]", 90, 180),
]
SNOMED_CONDITIONS = [
    ("44054006", "Diabetes mellitus type 2"),
    ("38341003", "Hypertensive disorder"),
    ("195967001", "Asthma"),
    ("55822004", "Hyperlipidemia"),
    ("40055000", "Chronic sinusitis"),
]
RXNORM = [("860975", "metformin 500 MG Oral Tablet"), ("314076", "lisinopril 10 MG Oral Tablet")]


def dumps(obj: object) -> str:
    # Compact, one line: the Lua scripts read one body per line. simplejson writes Decimal values
    # (the demo generator uses them for exact FHIR decimals) as JSON numbers.
    return simplejson.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _date(rng: random.Random, start_year: int = 1940, end_year: int = 2020) -> str:
    return f"{rng.randint(start_year, end_year)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def _instant(rng: random.Random) -> str:
    return f"{_date(rng, 2018, 2025)}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00Z"


def patient(rng: random.Random) -> dict:
    return {
        "resourceType": "Patient",
        "identifier": [
            {"system": "urn:oid:2.16.840.1.113883.4.1", "value": f"{rng.randint(10**8, 10**9 - 1)}"}
        ],
        "active": True,
        "name": [{"use": "official", "family": rng.choice(FAMILIES), "given": [rng.choice(GIVENS)]}],
        "telecom": [{"system": "phone", "value": f"555-{rng.randint(1000, 9999)}", "use": "home"}],
        "gender": rng.choice(["male", "female", "other", "unknown"]),
        "birthDate": _date(rng),
        "address": [
            {"line": [f"{rng.randint(1, 999)} Main St"], "city": rng.choice(CITIES), "postalCode": "12345"}
        ],
    }


def organization(rng: random.Random) -> dict:
    return {
        "resourceType": "Organization",
        "identifier": [
            {"system": "http://hl7.org/fhir/sid/us-npi", "value": f"{rng.randint(10**9, 10**10 - 1)}"}
        ],
        "active": True,
        "name": f"{rng.choice(CITIES)} {rng.choice(ORG_WORDS)} Hospital",
        "telecom": [{"system": "phone", "value": f"555-{rng.randint(1000, 9999)}"}],
    }


def practitioner(rng: random.Random) -> dict:
    return {
        "resourceType": "Practitioner",
        "identifier": [
            {"system": "http://hl7.org/fhir/sid/us-npi", "value": f"{rng.randint(10**9, 10**10 - 1)}"}
        ],
        "active": True,
        "name": [{"family": rng.choice(FAMILIES), "given": [rng.choice(GIVENS)], "prefix": ["Dr."]}],
        "gender": rng.choice(["male", "female"]),
    }


def encounter(rng: random.Random, patient_ref: str, practitioner_ref: str | None) -> dict:
    start = _instant(rng)
    body = {
        "resourceType": "Encounter",
        "identifier": [{"system": "urn:bench:encounter", "value": uuid.UUID(int=rng.getrandbits(128)).hex}],
        "status": "finished",
        "class": {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": "AMB",
            "display": "ambulatory",
        },
        "type": [{"coding": [{"system": "http://snomed.info/sct", "code": "185349003"}], "text": "Check up"}],
        "subject": {"reference": patient_ref},
        "period": {"start": start, "end": start},
    }
    if practitioner_ref:
        body["participant"] = [{"individual": {"reference": practitioner_ref}}]
    return body


def observation(rng: random.Random, patient_ref: str, encounter_ref: str | None = None) -> dict:
    code, display, unit, low, high = rng.choice(LOINC)
    body = {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": {
            "coding": [{"system": "http://loinc.org", "code": code, "display": display}],
            "text": display,
        },
        "subject": {"reference": patient_ref},
        "effectiveDateTime": _instant(rng),
        "valueQuantity": {
            "value": round(rng.uniform(low, high), 1),
            "unit": unit,
            "system": "http://unitsofmeasure.org",
            "code": unit,
        },
    }
    if encounter_ref:
        body["encounter"] = {"reference": encounter_ref}
    return body


def condition(rng: random.Random, patient_ref: str, encounter_ref: str | None = None) -> dict:
    code, display = rng.choice(SNOMED_CONDITIONS)
    body = {
        "resourceType": "Condition",
        "clinicalStatus": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}
            ]
        },
        "verificationStatus": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}
            ]
        },
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": code, "display": display}]},
        "subject": {"reference": patient_ref},
        "onsetDateTime": _instant(rng),
    }
    if encounter_ref:
        body["encounter"] = {"reference": encounter_ref}
    return body


def medication_request(rng: random.Random, patient_ref: str, practitioner_ref: str | None) -> dict:
    code, display = rng.choice(RXNORM)
    body = {
        "resourceType": "MedicationRequest",
        "identifier": [{"system": "urn:bench:rx", "value": uuid.UUID(int=rng.getrandbits(128)).hex}],
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [
                {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": code, "display": display}
            ]
        },
        "subject": {"reference": patient_ref},
        "authoredOn": _instant(rng),
        "dosageInstruction": [{"text": "1 tablet daily"}],
    }
    if practitioner_ref:
        body["requester"] = {"reference": practitioner_ref}
    return body


S1_TYPES = ["Patient", "Organization", "Practitioner", "Encounter", "Observation", "MedicationRequest"]


def s1_body(rng: random.Random, resource_type: str, patient_refs: list[str], practitioner_ref: str) -> dict:
    """One S1 body of `resource_type`; clinical types point at Patients/the Practitioner made in setup."""
    if resource_type == "Patient":
        return patient(rng)
    if resource_type == "Organization":
        return organization(rng)
    if resource_type == "Practitioner":
        return practitioner(rng)
    subject = rng.choice(patient_refs)
    if resource_type == "Encounter":
        return encounter(rng, subject, practitioner_ref)
    if resource_type == "Observation":
        return observation(rng, subject)
    if resource_type == "MedicationRequest":
        return medication_request(rng, subject, practitioner_ref)
    raise ValueError(resource_type)


def _urn(rng: random.Random) -> str:
    return f"urn:uuid:{uuid.UUID(int=rng.getrandbits(128), version=4)}"


def post_entry(resource: dict, full_url: str | None = None) -> dict:
    entry = {"resource": resource, "request": {"method": "POST", "url": resource["resourceType"]}}
    if full_url:
        entry = {"fullUrl": full_url, **entry}
    return entry


def transaction(entries: list[dict]) -> dict:
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def patient_bundle(rng: random.Random, size: int) -> dict:
    """A whole patient as one transaction of POST entries: Patient, Encounters, Observations, Conditions
    and MedicationRequests, all linked by urn:uuid references; `size` entries in all."""
    pat_urn = _urn(rng)
    entries = [post_entry(patient(rng), pat_urn)]
    encounters: list[str] = []
    n_encounters = max(1, size // 8)
    for _ in range(n_encounters):
        urn = _urn(rng)
        encounters.append(urn)
        entries.append(post_entry(encounter(rng, pat_urn, None), urn))
    while len(entries) < size:
        enc = rng.choice(encounters)
        roll = rng.random()
        if roll < 0.82:
            entries.append(post_entry(observation(rng, pat_urn, enc), _urn(rng)))
        elif roll < 0.94:
            entries.append(post_entry(condition(rng, pat_urn, enc), _urn(rng)))
        else:
            entries.append(post_entry(medication_request(rng, pat_urn, None), _urn(rng)))
    return transaction(entries)
