"""A small, deterministic clinical world and the callers who look at it, for the leak tests.

Two provider organisations (org-a with a department org-a1 below it through partOf, and org-b),
their staff, five patients with clinical data, a relative, a cross-organisation care team, a
researcher who may see Patients and Observations only with identifying fields redacted, a
statistician from whom the patient reference of Observations and Conditions is removed, and a nurse
whose Observations are decided on their content (FhirPath), under the access rules in RULES_YAML
(loaded with `ruleset.replace_rules`).

Every resource carries one *marker*: a word that occurs in that resource and nowhere else (a name,
or a note text). A response that contains the marker of a resource the caller may not read has
leaked that resource, whichever way it got there (an include, a chain, an outcome message...).
The researcher's secrets (real names, phones, birth dates, MRNs) are listed apart: they must never
reach the researcher at all, not even inside resources it may read.

Built with the service layer as the system (no HTTP, no access checks), then read back over HTTP by
each persona (tests/test_leaks.py) to learn what each one may read.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

from django.test import Client

from authz import rules, ruleset
from authz.context import AccessContext
from resources.services import resource_update

SYSTEM = AccessContext.system("leak-test world")
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
MRN_SYSTEM = "http://hospital.example.org/mrn"
HEART_RATE = "8867-4"
BODY_WEIGHT = "29463-7"
DIABETES = "44054006"
HYPERTENSION = "38341003"

# A typical rule set: patients see their compartment, relatives the patient's, clinicians what their
# organisations (and departments below them) manage plus their care teams' patients, a researcher
# de-identified Patients and Observations. `clinician-careteam` carries the same identity filter as
# `clinician`: without it a deactivated Practitioner would keep reading its care teams' patients.
RULES_YAML = """
rules:
  - {name: admin-all, role: Admin, resource: "*", operation: "*", validator: Allowed}
  - {name: patient-own, role: Patient, resource: "*", operation: [read, vread, search, history, everything], validator: PatientCompartment}
  - {name: patient-write-obs, role: Patient, resource: [Observation], operation: [create, update], validator: PatientCompartment}
  - {name: related-person, role: RelatedPerson, resource: "*", operation: [read, search], validator: PatientCompartment}
  - {name: clinician, role: Practitioner, resource: "*", operation: [read, vread, search, history, create, update, everything], validator: {LegitimateInterest: {inherit: true}}, identity-filter: "Practitioner.active = true"}
  - {name: clinician-careteam, role: Practitioner, resource: "*", operation: [read, search], validator: CareTeam, identity-filter: "Practitioner.active = true"}
  - name: research
    role: Researcher
    resource: [Patient, Observation]
    operation: [read, search]
    validator: Allowed
    property-filters:
      - {path: Patient.name, action: remove}
      - {path: Patient.telecom, action: remove}
      - {path: Patient.birthDate, action: generalize-year}
      - {path: Patient.identifier, action: pseudonymize}
    blocked-search-params: [address]
    blocked-includes: ["Patient:general-practitioner"]
  # A statistician reads everything, but not whose an Observation or a Condition is: the reference
  # to the patient is removed, so no route may connect them to the patient (compartment searches,
  # $everything, wildcard includes and revincludes).
  - name: statistics
    role: Statistician
    resource: "*"
    operation: [read, search, everything]
    validator: Allowed
    property-filters:
      - {path: Observation.subject, action: remove}
      - {path: Condition.subject, action: remove}
  # A nurse reads Patients and Practitioners, and the Observations whose value is below 100: a body
  # check in Python (FhirPath), which a chain or `_has` over Observations cannot apply.
  - {name: nurse-people, role: Nurse, resource: [Patient, Practitioner], operation: [read, search], validator: Allowed}
  - name: nurse-observations
    role: Nurse
    resource: [Observation]
    operation: [read, search]
    validator: {FhirPath: {expression: "valueQuantity.value < 100", search: "status=final"}}
"""


# --- the data ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PatientSpec:
    id: str
    family: str
    given: str
    gender: str
    birth_date: str
    phone: str
    mrn: str
    city: str
    org: str | None
    gp: str | None = None  # a reference, e.g. "Practitioner/dr-b"
    links: tuple[tuple[str, str], ...] = ()  # (other patient id, link type)
    heart_rate: int = 70
    weight: int = 70
    hr_performer: str | None = None  # a Practitioner id, possibly of another organisation
    condition: str | None = None  # a SNOMED code; None: no Condition, Encounter, MedicationRequest
    prescriber: str | None = None
    day: int = 1  # the day of January 2024 when the data was recorded


PATIENTS = (
    PatientSpec(
        "pa1", "Quenby", "Ottoline", "female", "1961-04-17", "+1-555-0101-771", "MRN-40117", "Wexcombe",
        "org-a", links=(("pa1-old", "replaces"),), heart_rate=88, weight=72, hr_performer="dr-b",
        condition=DIABETES, prescriber="dr-a", day=3,
    ),
    PatientSpec(
        "pa1-old", "Marchbanks", "Lettice", "female", "1961-04-18", "+1-555-0101-772", "MRN-40118",
        "Oldbury", None, links=(("pa1", "seealso"),), heart_rate=64, weight=70, day=2,
    ),
    PatientSpec(
        "pa2", "Ravensworth", "Peregrine", "male", "1975-09-02", "+1-555-0102-773", "MRN-50902",
        "Yarrowby", "org-a", gp="Practitioner/dr-b", heart_rate=76, weight=105, hr_performer="dr-a",
        condition=HYPERTENSION, prescriber="dr-a", day=5,
    ),
    PatientSpec(
        "pa3", "Stilwell", "Marigold", "female", "1988-12-30", "+1-555-0103-774", "MRN-61230",
        "Zennor", "org-a1", heart_rate=58, weight=61, hr_performer="dr-a1", condition=HYPERTENSION,
        prescriber="dr-a1", day=7,
    ),
    PatientSpec(
        "pb1", "Thistlewood", "Barnaby", "male", "1950-06-21", "+1-555-0104-775", "MRN-70621",
        "Quarrington", "org-b", heart_rate=130, weight=101, hr_performer="dr-a", condition=DIABETES,
        prescriber="dr-b", day=11,
    ),
)  # fmt: skip

ORGANIZATIONS = {"org-a": ("Aldersgate Health", None), "org-a1": ("Aldersgate Cardiology", "org-a"),
                 "org-b": ("Brookfield Clinic", None)}  # fmt: skip
# id: (family, given, active, organisation of its PractitionerRole, role active)
PRACTITIONERS = {
    "dr-a": ("Achterberg", "Wilhelmina", True, "org-a", True),
    "dr-a1": ("Abernethy", "Cuthbert", True, "org-a1", True),
    "dr-b": ("Bramwell", "Philippa", True, "org-b", True),
    "dr-inactive": ("Idlewood", "Mortimer", False, "org-a", False),
}


@dataclass
class World:
    """What was built: every resource's key ("Type/id") with its marker, and the secrets the
    researcher must never see."""

    markers: dict[str, str] = field(default_factory=dict)
    researcher_secrets: list[str] = field(default_factory=list)

    @property
    def keys(self) -> list[str]:
        return list(self.markers)


def ref(reference: str) -> dict:
    return {"reference": reference}


def put(world: World, resource_type: str, fhir_id: str, marker: str, **body) -> None:
    resource_update(
        SYSTEM,
        resource_type=resource_type,
        fhir_id=fhir_id,
        body={"resourceType": resource_type, "id": fhir_id, **body},
    )
    world.markers[f"{resource_type}/{fhir_id}"] = marker


def note_marker(key: str) -> str:
    # Letters only, so it is never part of a date, a number or an id used in a query.
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return "mark" + "".join(chr(ord("a") + int(c, 16)) for c in digest)


def add_organizations(world: World) -> None:
    for org_id, (name, parent) in ORGANIZATIONS.items():
        body = {"active": True, "name": name}
        if parent:
            body["partOf"] = ref(f"Organization/{parent}")
        put(world, "Organization", org_id, name, **body)


def add_staff(world: World) -> None:
    for dr, (family, given, active, org, role_active) in PRACTITIONERS.items():
        put(world, "Practitioner", dr, family, active=active, name=[{"family": family, "given": [given]}])
        role_id = f"role-{dr}"
        marker = note_marker(f"PractitionerRole/{role_id}")
        put(
            world, "PractitionerRole", role_id, marker, active=role_active,
            practitioner=ref(f"Practitioner/{dr}"), organization=ref(f"Organization/{org}"),
            specialty=[{"text": marker}],
        )  # fmt: skip


def add_patient(world: World, p: PatientSpec) -> None:
    body: dict = {
        "active": True,
        "identifier": [{"system": MRN_SYSTEM, "value": p.mrn}],
        "name": [{"family": p.family, "given": [p.given]}],
        "telecom": [{"system": "phone", "value": p.phone, "use": "home"}],
        "gender": p.gender,
        "birthDate": p.birth_date,
        "address": [{"city": p.city}],
        # The narrative repeats the name: a redacting rule must drop it.
        "text": {
            "status": "generated",
            "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{p.given} {p.family}</div>',
        },
    }
    if p.org:
        body["managingOrganization"] = ref(f"Organization/{p.org}")
    if p.gp:
        body["generalPractitioner"] = [ref(p.gp)]
    if p.links:
        body["link"] = [{"other": ref(f"Patient/{other}"), "type": kind} for other, kind in p.links]
    put(world, "Patient", p.id, p.family, **body)
    world.researcher_secrets += [p.family, p.given, p.phone, p.birth_date, p.birth_date[:7], p.mrn]


def _quantity(value: int, unit: str, code: str) -> dict:
    return {"value": value, "unit": unit, "system": UCUM, "code": code}


def _note(key: str) -> list[dict]:
    return [{"text": note_marker(key)}]


def add_observations(world: World, p: PatientSpec) -> None:
    when = f"2024-01-{p.day:02d}T09:30:00Z"
    for suffix, code, display, quantity, performer in (
        ("hr", HEART_RATE, "Heart rate", _quantity(p.heart_rate, "/min", "/min"), p.hr_performer),
        ("bw", BODY_WEIGHT, "Body weight", _quantity(p.weight, "kg", "kg"), None),
    ):
        obs_id = f"obs-{p.id}-{suffix}"
        key = f"Observation/{obs_id}"
        body = {
            "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": "vital-signs"}]}],
            "code": {"coding": [{"system": LOINC, "code": code, "display": display}]},
            "subject": ref(f"Patient/{p.id}"),
            "effectiveDateTime": when,
            "valueQuantity": quantity,
            "note": _note(key),
        }  # fmt: skip
        if performer:
            body["performer"] = [ref(f"Practitioner/{performer}")]
        put(world, "Observation", obs_id, note_marker(key), **body)


def add_record(world: World, p: PatientSpec) -> None:
    """A Condition, an Encounter at the patient's organisation and a MedicationRequest."""
    if p.condition is None:
        return
    subject = ref(f"Patient/{p.id}")
    key = f"Condition/cond-{p.id}"
    put(
        world, "Condition", f"cond-{p.id}", note_marker(key), subject=subject,
        code={"coding": [{"system": SNOMED, "code": p.condition}]},
        recordedDate=f"2024-01-{p.day:02d}", note=_note(key),
    )  # fmt: skip
    key = f"Encounter/enc-{p.id}"
    put(
        world, "Encounter", f"enc-{p.id}", note_marker(key), status="finished", subject=subject,
        **{"class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}},
        serviceProvider=ref(f"Organization/{p.org}"),
        period={"start": f"2024-01-{p.day:02d}T09:00:00Z", "end": f"2024-01-{p.day:02d}T10:00:00Z"},
        reasonCode=[{"text": note_marker(key)}],
    )  # fmt: skip
    key = f"MedicationRequest/mr-{p.id}"
    put(
        world, "MedicationRequest", f"mr-{p.id}", note_marker(key), status="active", intent="order",
        medicationCodeableConcept={"text": "metformin" if p.condition == DIABETES else "amlodipine"},
        subject=subject, requester=ref(f"Practitioner/{p.prescriber}"), note=_note(key),
    )  # fmt: skip


def add_relatives_and_teams(world: World) -> None:
    put(
        world, "RelatedPerson", "rp-pa1", "Wickersham", patient=ref("Patient/pa1"),
        name=[{"family": "Wickersham", "given": ["Hollis"]}],
    )  # fmt: skip
    # dr-a (org-a) looks after pb1 (org-b) through a care team: a cross-organisation grant.
    put(
        world, "CareTeam", "ct-pb1", "Kestrelmoor team", status="active", name="Kestrelmoor team",
        subject=ref("Patient/pb1"), participant=[{"member": ref("Practitioner/dr-a")}],
    )  # fmt: skip


def load_rules() -> None:
    ruleset.replace_rules(ruleset.parse_yaml(RULES_YAML))
    # replace_rules forgets the cached rules on commit, and a test database never commits.
    rules.forget_rules()


def build_world() -> World:
    world = World()
    add_organizations(world)
    add_staff(world)
    for spec in PATIENTS:
        add_patient(world, spec)
    for spec in PATIENTS:
        add_observations(world, spec)
        add_record(world, spec)
    add_relatives_and_teams(world)
    load_rules()
    return world


# --- the callers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Persona:
    name: str
    role: str
    identity: str = ""  # "Patient/pa1"; empty for the operator, the researcher and the public


PERSONAS = (
    Persona("admin", "Admin"),
    *(Persona(p.id, "Patient", f"Patient/{p.id}") for p in PATIENTS),
    Persona("rp-pa1", "RelatedPerson", "RelatedPerson/rp-pa1"),
    *(Persona(dr, "Practitioner", f"Practitioner/{dr}") for dr in PRACTITIONERS),
    Persona("researcher", "Researcher"),
    Persona("statistician", "Statistician"),
    Persona("nurse", "Nurse"),
    Persona("public", "Public"),
)


@dataclass
class Reply:
    status: int
    text: str
    headers: dict

    @property
    def json(self):
        return json.loads(self.text) if self.text else None


class Caller:
    """One persona's HTTP client (Django's test client with its bearer token)."""

    def __init__(self, persona: Persona, authorization: str | None):
        self.persona = persona
        self.client = Client()
        self.headers = {"Authorization": authorization} if authorization else {}

    def _reply(self, response) -> Reply:
        return Reply(response.status_code, response.content.decode(), dict(response.headers))

    def get(self, path: str, params: list[tuple[str, str]] | None = None) -> Reply:
        url = "/fhir/" + path.lstrip("/")
        if params:
            url += "?" + urlencode(params)
        return self._reply(self.client.get(url, headers=self.headers))

    def follow(self, url: str) -> Reply:
        """A link the server wrote (absolute), fetched as this persona."""
        parts = urlsplit(url)
        return self._reply(self.client.get(f"{parts.path}?{parts.query}", headers=self.headers))

    def send(self, method: str, path: str, body: dict, headers: dict | None = None) -> Reply:
        response = getattr(self.client, method)(
            "/fhir/" + path.lstrip("/"),
            json.dumps(body),
            content_type="application/fhir+json",
            headers={**self.headers, **(headers or {})},
        )
        return self._reply(response)


def callers() -> dict[str, Caller]:
    """A Caller per persona, each with a freshly minted API token (the public has none)."""
    from conftest import bearer

    return {p.name: Caller(p, None if p.role == "Public" else bearer(p.role, p.identity)) for p in PERSONAS}
