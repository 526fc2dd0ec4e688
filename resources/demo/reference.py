"""Shared reference data: the demo Organizations, Practitioners, PractitionerRoles and CareTeams.

They have fixed ids (org-1, prac-3, role-3, careteam-1) and are written with PUT before any patient,
so patient bundles can point at them as `Organization/org-1`. Their content does not depend on the
seed: every seed's patients share the same providers, and writing them again only adds a version.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cache

from . import codes, people
from .fhir import concept, put, ref, transaction

PRACTITIONERS_PER_ORG = 4  # three doctors and a nurse

# (SNOMED CT specialty code, display) for the doctors of each organisation, in order.
_GENERAL_PRACTICE = ("394814009", "General practice")
_INTERNAL_MEDICINE = ("419192003", "Internal medicine")
_CARDIOLOGY = ("394579002", "Cardiology")
_PAEDIATRICS = ("394537008", "Pediatric specialty")
_EMERGENCY = ("773568002", "Emergency medicine")


@dataclass(frozen=True)
class Org:
    id: str
    name: str
    country: str
    city: str
    state: str
    postal_code: str
    line: str
    phone: str
    # Hours from UTC; encounter times are written in this fixed standard-time offset (no daylight
    # saving), so the output does not depend on the installed time-zone database.
    utc_offset: int
    part_of: str | None
    specialties: tuple[tuple[str, str], ...]


ORGANIZATIONS = (
    Org(
        "org-1",
        "Harborview Medical Center",
        "US",
        "Boston",
        "MA",
        "02114",
        "200 Harbor View Terrace",
        "+1 617 555 0100",
        -5,
        None,
        (_EMERGENCY, _INTERNAL_MEDICINE, _CARDIOLOGY),
    ),
    Org(
        "org-2",
        "Harborview Community Clinic",
        "US",
        "Cambridge",
        "MA",
        "02139",
        "48 Elm Street",
        "+1 617 555 0140",
        -5,
        "org-1",
        (_GENERAL_PRACTICE, _GENERAL_PRACTICE, _PAEDIATRICS),
    ),
    Org(
        "org-3",
        "Klinikum Lindenau",
        "DE",
        "Leipzig",
        "Sachsen",
        "04177",
        "Lindenauer Markt 9",
        "+49 341 5550100",
        1,
        None,
        (_GENERAL_PRACTICE, _INTERNAL_MEDICINE, _EMERGENCY),
    ),
    Org(
        "org-4",
        "Clinique des Tilleuls",
        "FR",
        "Lyon",
        "Auvergne-Rhône-Alpes",
        "69004",
        "14 allée des Tilleuls",
        "+33 4 99 00 01 00",
        1,
        None,
        (_GENERAL_PRACTICE, _PAEDIATRICS, _CARDIOLOGY),
    ),
    Org(
        "org-5",
        "Hospital Vila Serena",
        "BR",
        "São Paulo",
        "SP",
        "01310-100",
        "Avenida Paulista, 1500",
        "+55 11 5555-0100",
        -3,
        None,
        (_GENERAL_PRACTICE, _INTERNAL_MEDICINE, _EMERGENCY),
    ),
)


@dataclass(frozen=True)
class Staff:
    id: str  # Practitioner id; the PractitionerRole is role-<same number>
    org: str
    doctor: bool
    specialty: tuple[str, str] | None
    gender: str
    name: people.PersonName

    @property
    def role_id(self) -> str:
        return "role-" + self.id.removeprefix("prac-")

    @property
    def display(self) -> str:
        prefix = "Dr. " if self.doctor else ""
        return f"{prefix}{' '.join(self.name.given)} {self.name.family}"

    @property
    def reference(self) -> dict:
        return ref(f"Practitioner/{self.id}", self.display)


@dataclass(frozen=True)
class Site:
    """What a patient builder needs to know about a patient's organisation."""

    org: Org
    hospital: Org  # where emergencies and admissions of this site's patients go
    doctors: tuple[Staff, ...]
    nurses: tuple[Staff, ...]
    care_team: str

    @property
    def reference(self) -> dict:
        return ref(f"Organization/{self.org.id}", self.org.name)


@cache
def staff() -> tuple[Staff, ...]:
    # A fixed generator: the providers are the same whatever seed the patients use.
    rng = random.Random("demo reference data")
    out = []
    number = 0
    for org in ORGANIZATIONS:
        country = people.COUNTRIES[org.country]
        for slot in range(PRACTITIONERS_PER_ORG):
            number += 1
            doctor = slot < len(org.specialties)
            gender = rng.choice(("female", "male"))
            name = people.pick_name(rng, people.pick_nationality(rng, country), gender)
            specialty = org.specialties[slot] if doctor else None
            out.append(Staff(f"prac-{number}", org.id, doctor, specialty, gender, name))
    return tuple(out)


@cache
def sites() -> dict[str, Site]:
    by_org: dict[str, list[Staff]] = {}
    for person in staff():
        by_org.setdefault(person.org, []).append(person)
    out = {}
    for index, org in enumerate(ORGANIZATIONS, start=1):
        hospital = _org(org.part_of or org.id)
        members = by_org[org.id]
        out[org.id] = Site(
            org=org,
            hospital=hospital,
            doctors=tuple(p for p in members if p.doctor),
            nurses=tuple(p for p in members if not p.doctor),
            care_team=f"careteam-{index}",
        )
    return out


def _address(org: Org) -> dict:
    return {
        "use": "work",
        "line": [org.line],
        "city": org.city,
        "state": org.state,
        "postalCode": org.postal_code,
        "country": org.country,
    }


def organization(org: Org, number: int) -> dict:
    body = {
        "resourceType": "Organization",
        "id": org.id,
        "identifier": [{"system": codes.ORG_SYSTEM, "value": f"ORG-{number:04d}"}],
        "active": True,
        "type": [concept(codes.ORGANIZATION_TYPE, "prov", "Healthcare Provider")],
        "name": org.name,
        "telecom": [{"system": "phone", "value": org.phone, "use": "work"}],
        "address": [_address(org)],
    }
    if org.part_of:
        parent = _org(org.part_of)
        body["partOf"] = ref(f"Organization/{parent.id}", parent.name)
    return body


def _org(org_id: str) -> Org:
    return next(o for o in ORGANIZATIONS if o.id == org_id)


def practitioner(person: Staff) -> dict:
    org = _org(person.org)
    name = {"use": "official", "family": person.name.family, "given": list(person.name.given)}
    if person.doctor:
        name["prefix"] = ["Dr."]
    local = people.ascii_slug(f"{person.name.called}.{person.name.family}")
    degree = ("MD", "Doctor of Medicine") if person.doctor else ("RN", "Registered Nurse")
    return {
        "resourceType": "Practitioner",
        "id": person.id,
        "identifier": [{"system": codes.STAFF_SYSTEM, "value": person.id.upper()}],
        "active": True,
        "name": [name],
        "telecom": [
            {"system": "phone", "value": org.phone, "use": "work"},
            {"system": "email", "value": f"{local}@{people.EMAIL_DOMAINS[0]}", "use": "work"},
        ],
        "address": [_address(org)],
        "gender": person.gender,
        "qualification": [{"code": concept(codes.DEGREE, *degree)}],
    }


def practitioner_role(person: Staff) -> dict:
    org = _org(person.org)
    role = ("doctor", "Doctor") if person.doctor else ("nurse", "Nurse")
    body = {
        "resourceType": "PractitionerRole",
        "id": person.role_id,
        "active": True,
        "period": {"start": "2015-01-01"},
        "practitioner": person.reference,
        "organization": ref(f"Organization/{org.id}", org.name),
        "code": [concept(codes.PRACTITIONER_ROLE, *role)],
        "telecom": [{"system": "phone", "value": org.phone, "use": "work"}],
    }
    if person.specialty:
        body["specialty"] = [concept(codes.SNOMED, *person.specialty)]
    return body


def care_team(site: Site) -> dict:
    members = site.doctors + site.nurses
    return {
        "resourceType": "CareTeam",
        "id": site.care_team,
        "status": "active",
        "category": [concept(codes.LOINC, "LA28865-6", "Longitudinal care-coordination focused care team")],
        "name": f"{site.org.name} care team",
        "participant": [
            {
                "role": [
                    concept(
                        codes.PRACTITIONER_ROLE, *(("doctor", "Doctor") if p.doctor else ("nurse", "Nurse"))
                    )
                ],
                "member": p.reference,
            }
            for p in members
        ],
        "managingOrganization": [site.reference],
    }


def reference_resources() -> list[dict]:
    """Organizations (parents before children), Practitioners, PractitionerRoles, CareTeams."""
    out = [organization(org, n) for n, org in enumerate(ORGANIZATIONS, start=1)]
    out += [practitioner(p) for p in staff()]
    out += [practitioner_role(p) for p in staff()]
    out += [care_team(site) for site in sites().values()]
    return out


def reference_bundle() -> dict:
    """One transaction that PUTs all shared reference data (a fresh dict on every call)."""
    return transaction([put(resource) for resource in reference_resources()])
