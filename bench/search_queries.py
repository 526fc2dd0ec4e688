"""The concrete queries of the search scenarios (S3, S8, S4), built from what the bench database holds.

Pure functions of rows read from `resources_resource` (type, id, parsed body), so the values searched
for are values the data has: names, cities, dates and ids of the demo patients for S3/S8, of the
100,000 bench Patients for S4. Deterministic for a given database: rows are taken in a fixed order
and picked with a seeded random generator.
"""

from __future__ import annotations

import random
from collections import Counter
from urllib.parse import urlencode

from bench.load_patients import IDENTIFIER_SYSTEM

LOINC = "http://loinc.org"
HEART_RATE = "8867-4"
BODY_WEIGHT = "29463-7"
# Laboratory codes of the demo generator (HbA1c, LDL, creatinine, hemoglobin): a reverse chain
# `_has:Observation:patient:code=` over codes that only part of the patients have.
HAS_CODES = ("4548-4", "2089-1", "2160-0", "718-7")
S3_COUNT = 20
# Every S3 kind appears this many times in the wrk request list (its variants cycled), so the Lua
# script's uniform pick over lines is a uniform pick over kinds.
VARIANTS = 20


def _q(resource_type: str, params: list[tuple[str, str]]) -> str:
    return f"/{resource_type}?{urlencode(params, safe='|:/')}"


def _day(value: str | None) -> str | None:
    return value[:10] if value and len(value) >= 10 else None


def s3_queries(
    patients: list[tuple[str, dict]],
    organizations: list[dict],
    observations: list[dict],
    encounters: list[dict],
    seed: int = 3,
) -> list[tuple[str, list[str]]]:
    """(kind, [paths without the /fhir prefix]) for every S3 query kind of issue 3."""
    rng = random.Random(seed)
    picked = rng.sample(patients, min(VARIANTS, len(patients)))
    ids = [pid for pid, _ in picked]
    givens = Counter(g for _, body in patients for n in body.get("name", []) for g in n.get("given", []))
    families = Counter(
        n.get("family") for _, body in patients for n in body.get("name", []) if n.get("family")
    )
    # `John` when the demo data has it (the example), else its most common given name.
    given = "John" if givens.get("John") else givens.most_common(1)[0][0]
    fragment = "ohn" if given == "John" else given[1:4].lower()
    common_families = [f for f, _ in families.most_common(VARIANTS)]
    births = [body["birthDate"] for _, body in picked if body.get("birthDate")]
    cities = [a["city"] for _, body in picked for a in body.get("address", [])[:1] if a.get("city")]
    org_words = [
        max(o["name"].split(), key=len) for o in organizations if o.get("name") and o["name"].split()
    ]
    obs_days = [d for d in (_day(o.get("effectiveDateTime")) for o in observations) if d]
    enc_days = [d for d in (_day(e.get("period", {}).get("start")) for e in encounters) if d]

    def count(params: list[tuple[str, str]]) -> list[tuple[str, str]]:
        return params if any(k == "_count" for k, _ in params) else params + [("_count", str(S3_COUNT))]

    kinds: list[tuple[str, list[str]]] = []

    def add(kind: str, resource_type: str, variants: list[list[tuple[str, str]]]) -> None:
        kinds.append((kind, [_q(resource_type, count(v)) for v in variants]))

    add("Patient?name", "Patient", [[("name", given)]])
    add("Patient?name:contains", "Patient", [[("name:contains", fragment)]])
    add("Patient?given:exact", "Patient", [[("given:exact", given)]])
    for prefix in ("eq", "ne", "lt", "gt", "ge", "le", "sa", "eb"):
        add(f"Patient?birthdate={prefix}", "Patient", [[("birthdate", prefix + b)] for b in births])
    # A middle slice of a city name, so the match is not a prefix match.
    add(
        "Patient?address:contains",
        "Patient",
        [[("address:contains", c[1:5].lower())] for c in cities if len(c) >= 5],
    )
    add(
        "Organization?name:contains",
        "Organization",
        [[("name:contains", w[1:5].lower())] for w in org_words if len(w) >= 5][:VARIANTS],
    )
    add("Observation?code=system|code", "Observation", [[("code", f"{LOINC}|{BODY_WEIGHT}")]])
    add("Observation?code=|code", "Observation", [[("code", f"|{BODY_WEIGHT}")]])
    add("Observation?code=system|", "Observation", [[("code", f"{LOINC}|")]])
    add("Observation?category", "Observation", [[("category", "laboratory")]])
    add("Observation?patient", "Observation", [[("patient", i)] for i in ids])
    add(
        "Observation?date",
        "Observation",
        [[("date", d)] for d in rng.sample(obs_days, min(VARIANTS, len(obs_days)))],
    )
    add(
        "Encounter?date",
        "Encounter",
        [[("date", d)] for d in rng.sample(enc_days, min(VARIANTS, len(enc_days)))],
    )
    add(
        "Patient?_id&_revinclude",
        "Patient",
        [[("_id", i), ("_revinclude", "Observation:patient")] for i in ids],
    )
    add(
        "Observation?patient&code&_sort=-date",
        "Observation",
        [
            [("patient", i), ("code", f"{LOINC}|{HEART_RATE}"), ("_sort", "-date"), ("_count", "20")]
            for i in ids
        ],
    )
    add(
        "Observation?code&value-quantity=gt",
        "Observation",
        [[("code", f"{LOINC}|{HEART_RATE}"), ("value-quantity", "gt100")]],
    )
    add(
        "Encounter?patient&_include",
        "Encounter",
        [[("patient", i), ("_include", "Encounter:practitioner")] for i in ids],
    )
    add(
        "Patient?_has:Observation",
        "Patient",
        [[("_has:Observation:patient:code", f"{LOINC}|{c}")] for c in HAS_CODES],
    )
    add("Condition?subject.name", "Condition", [[("subject.name", f)] for f in common_families])
    return [(kind, paths) for kind, paths in kinds if paths]


def s3_lines(queries: list[tuple[str, list[str]]]) -> list[str]:
    """The wrk request list: VARIANTS lines per kind, its variants cycled."""
    return [paths[i % len(paths)] for _, paths in queries for i in range(VARIANTS)]


def s8_queries(patient_ids: list[str]) -> list[str]:
    return [_q("Observation", [("patient", i), ("_count", "1000")]) for i in patient_ids]


# S4: search kind -> (share of iterations, p50 budget in ms), from issue 3 (Blaze's budgets).
S4_KINDS = {
    "identifier": (25, 3),
    "family+given": (25, 20),
    "family+birthdate": (15, 20),
    "name": (10, 5),
    "family+gender": (10, 60),
    "address-city+family": (5, 30),
    "birthdate-range+gender": (5, 40),
    "sort-lastUpdated": (5, 5),
}
S4_READ_BUDGET_MS = 2
S4_UPDATE_BUDGET_MS = 60


def s4_search(kind: str, body: dict) -> str:
    """The search path of one S4 lookup, built from a bench Patient's own values."""
    name = body["name"][0]
    family, given = name["family"], name["given"][-1]
    birth = body["birthDate"]
    if kind == "identifier":
        params = [("identifier", f"{IDENTIFIER_SYSTEM}|{body['identifier'][0]['value']}")]
    elif kind == "family+given":
        params = [("family", family), ("given", given)]
    elif kind == "family+birthdate":
        params = [("family", family), ("birthdate", birth)]
    elif kind == "name":
        params = [("name", family)]
    elif kind == "family+gender":
        params = [("family", family), ("gender", body["gender"])]
    elif kind == "address-city+family":
        params = [("address-city", body["address"][0]["city"]), ("family", family)]
    elif kind == "birthdate-range+gender":
        start = int(birth[:4]) // 5 * 5
        params = [
            ("birthdate", f"ge{start}-01-01"),
            ("birthdate", f"lt{start + 5}-01-01"),
            ("gender", body["gender"]),
        ]
    elif kind == "sort-lastUpdated":
        params = [("_sort", "-_lastUpdated")]
    else:
        raise ValueError(kind)
    return _q("Patient", params + [("_count", str(S3_COUNT))])
