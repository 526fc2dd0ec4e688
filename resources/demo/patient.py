"""The Patient resource of a demo patient: identity, demographics, contact details, language, and the
physiology the observation builders draw from.
"""

from __future__ import annotations

import random
from datetime import date, timedelta

from . import codes, people
from .fhir import concept, fhir_date, ref
from .observations import Physiology
from .reference import Site, Staff

BIRTH_FROM = date(1930, 1, 1)
BIRTH_TO = date(2020, 12, 31)

# Language display names for the country languages a patient may speak besides their own.
_LANGUAGE_DISPLAY = {n.language: n.language_display for n in people.NATIONALITIES.values()}


def mrn(seed: int, number: int) -> str:
    return f"MRN-{seed}-{number}"


def _marital_status(rng: random.Random, age: int) -> str:
    if age < 18:
        return "S"
    if age < 30:
        weights = (25, 70, 4, 1)
    elif age < 65:
        weights = (60, 20, 17, 3)
    else:
        weights = (50, 8, 12, 30)
    return rng.choices(("M", "S", "D", "W"), weights=weights)[0]


def _address(rng: random.Random, country: people.Country) -> dict:
    city, state, postal = rng.choice(country.cities)
    line = [country.line.format(street=rng.choice(country.streets), n=rng.randint(1, 240))]
    if country.code == "US" and rng.random() < 0.25:
        line.append(f"Apt {rng.randint(1, 30)}{rng.choice('ABCD')}")
    return {
        "use": "home",
        "type": "physical",
        "line": line,
        "city": city,
        "state": state,
        "postalCode": people.fill(postal, rng),
        "country": country.code,
    }


def build_patient(
    rng: random.Random, seed: int, number: int, site: Site, as_of: date
) -> tuple[dict, Physiology, Staff]:
    """(Patient body, physiology, general practitioner)."""
    country = people.COUNTRIES[site.org.country]
    roll = rng.random()
    gender = "female" if roll < 0.495 else "male" if roll < 0.99 else "other"
    birth = BIRTH_FROM + timedelta(days=rng.randrange((BIRTH_TO - BIRTH_FROM).days + 1))
    age = (as_of - birth).days // 365
    nationality = people.pick_nationality(rng, country)
    name_gender = gender if gender != "other" else rng.choice(("female", "male"))
    name = people.pick_name(rng, nationality, name_gender)
    gp = rng.choice(site.doctors)

    telecom = [{"system": "phone", "value": people.fill(country.phone, rng), "use": "mobile"}]
    if age >= 14:
        local = people.ascii_slug(f"{name.called}.{name.family}")
        domain = rng.choice(people.EMAIL_DOMAINS)
        telecom.append({"system": "email", "value": f"{local}{rng.randint(1, 99)}@{domain}", "use": "home"})

    languages = [nationality.language]
    home_language = people.NATIONALITIES[country.home].language
    if home_language not in languages:
        languages.append(home_language)
    communication = []
    for position, tag in enumerate(languages):
        entry: dict = {"language": concept(codes.BCP47, tag, _LANGUAGE_DISPLAY[tag])}
        if position == 0:
            entry["preferred"] = True
        communication.append(entry)

    marital = _marital_status(rng, age)
    body = {
        "resourceType": "Patient",
        "identifier": [
            {
                "use": "usual",
                "type": concept(codes.IDENTIFIER_TYPE, "MR", "Medical record number"),
                "system": codes.MRN_SYSTEM,
                "value": mrn(seed, number),
                "assigner": ref(f"Organization/{site.org.id}", site.org.name),
            }
        ],
        "active": True,
        "name": [{"use": "official", "family": name.family, "given": list(name.given)}],
        "telecom": telecom,
        "gender": gender,
        "birthDate": fhir_date(birth),
        "address": [_address(rng, country)],
        "maritalStatus": concept(codes.MARITAL_STATUS, marital, codes.MARITAL[marital]),
        "communication": communication,
        "generalPractitioner": [gp.reference],
        "managingOrganization": site.reference,
    }

    female = name_gender == "female"
    physiology = Physiology(
        gender=name_gender,
        birth=birth,
        adult_height=rng.gauss(163, 6) if female else rng.gauss(176, 7),
        adult_bmi=min(max(rng.gauss(26.5, 4.5), 18.0), 45.0),
    )
    return body, physiology, gp
