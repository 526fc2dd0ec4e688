"""Nothing a caller may not read reaches it through a search, however the search is phrased.

The world (tests/personas.py): two provider organisations, their staff, five patients with clinical
data, a relative, a cross-organisation care team, a researcher with redacting property filters,
under the brief's access rules. Each persona's *single reads* (GET [type]/[id]) are the reference:
what it may see. The tests prove, over HTTP, that

1. (property-based, hypothesis) for random searches over Patient, Observation, Condition, Encounter,
   Organization and Practitioner (parameters with prefixes and modifiers, several ids, chains,
   `_has`, `_include`/`_revinclude` with `*` and `:iterate`, `_sort`, `_count` with paging,
   `_count=0`, `_total=accurate`, `_summary=count|true`), compartment searches of anyone's
   compartment, system searches over several `_type`s, and `$everything` calls, for every persona:
   (a) every entry, match or include, on every page, is readable by that persona and has the body
       its read returns; every included resource is linked by a reference to an entry it came with
       (or, for `$everything`, to a part of the record the persona may read);
   (b) the matches, over all pages, are exactly the admin's matches of the same query restricted to
       what the persona may read, where every chain and `_has` is itself evaluated over what the
       persona may read (the oracle rewrites them into id lists); `_sort` keeps the admin's order;
       `total`, when given, is the number of those matches;
   (c) no response (body, links, paging cursors) carries the marker of a resource the persona may
       not read, and nothing the researcher gets carries a real name, phone, birth date or MRN;
   (d) a refusal is a 401/403/400 OperationOutcome, never a 500; the researcher's queries that read
       a redacted or blocked element are 403.
2. named regressions for leaks known from other servers (one test each, below the property test).

Design, for pytest-django: the world is built once per module inside a transaction opened by a
module-scoped fixture (`django_db_blocker.unblock()`), and rolled back at the end of the module.
Each test then runs in its own savepoint (the `django_db` mark), so the write tests leave nothing
behind. The hypothesis test is parametrised by kind of query (each type, compartment, system,
$everything) so each kind gets its share of examples; it draws a whole query per example
(`st.data()`) and runs it for every persona, all examples within that test's one savepoint: searches
do not write, so examples do not interfere (hence the suppressed function_scoped_fixture health
check). Runs are derandomised (the same 9 x 10 examples every run, as a CI test should be);
LEAKS_EXPLORE=1 draws new ones, LEAKS_EXAMPLES=60 draws more per kind.

Leaks these tests found were fixed and stay as regression tests: a researcher bracketing a birth
date with two `birthdate` bounds, and `$everything` on an unreadable patient returning the supporting
resources its record refers to.
"""

from __future__ import annotations

import base64
import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from urllib.parse import parse_qsl, unquote, unquote_plus, urlencode, urlsplit

import pytest
from django.db import transaction
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from authz import rules
from tests.personas import (
    BODY_WEIGHT,
    DIABETES,
    HEART_RATE,
    HYPERTENSION,
    LOINC,
    MRN_SYSTEM,
    ORGANIZATIONS,
    PATIENTS,
    PERSONAS,
    PRACTITIONERS,
    UCUM,
    Caller,
    Reply,
    World,
    build_world,
    callers,
)

pytestmark = pytest.mark.django_db

NAMES = [p.name for p in PERSONAS]
ADMIN = "admin"
PATIENT = {p.id: p for p in PATIENTS}


# --- the world, as each persona sees it ------------------------------------------------------------


@dataclass
class Seen:
    world: World
    callers: dict[str, Caller]
    reads: dict[str, dict[str, Reply]]  # persona -> "Type/id" -> its single read
    admin_cache: dict = field(default_factory=dict)

    def __repr__(self) -> str:  # hypothesis prints the arguments of a failing example
        return f"<world of {len(self.world.markers)} resources>"

    def _repr_pretty_(self, printer, cycle) -> None:  # ...with its own pretty-printer
        printer.text(repr(self))

    def readable(self, persona: str) -> set[str]:
        return {key for key, reply in self.reads[persona].items() if reply.status == 200}

    def read_body(self, persona: str, key: str) -> dict:
        return self.reads[persona][key].json

    @cached_property
    def references(self) -> dict[str, set[str]]:
        """The keys ("Type/id") each resource's stored body refers to (from the admin's reads)."""
        out = {}
        for key, reply in self.reads[ADMIN].items():
            out[key] = set(re.findall(r'"reference":\s*"([A-Za-z]+/[A-Za-z0-9.-]+)"', reply.text))
        return out

    def linked(self, a: str, b: str) -> bool:
        return b in self.references.get(a, ()) or a in self.references.get(b, ())

    def references_as(self, persona: str) -> dict[str, set[str]]:
        """The keys each resource the persona may read refers to, in the body its read returns (a
        property filter may have removed a reference)."""
        cache_key = ("references", persona)
        if cache_key not in self.admin_cache:
            self.admin_cache[cache_key] = {
                key: set(re.findall(r'"reference":\s*"([A-Za-z]+/[A-Za-z0-9.-]+)"', reply.text))
                for key, reply in self.reads[persona].items()
                if reply.status == 200
            }
        return self.admin_cache[cache_key]

    def linked_as(self, persona: str, a: str, b: str) -> bool:
        """Whether a reference the persona can see links `a` and `b`."""
        references = self.references_as(persona)
        return b in references.get(a, ()) or a in references.get(b, ())


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker) -> Seen:
    """The world, built once for the module inside a transaction that is rolled back at the end."""
    with django_db_blocker.unblock():
        atomic = transaction.atomic()
        atomic.__enter__()
        try:
            built = build_world()
            by_name = callers()
            reads = {name: {key: caller.get(key) for key in built.keys} for name, caller in by_name.items()}
        except BaseException:
            transaction.set_rollback(True)
            atomic.__exit__(None, None, None)
            raise
    yield Seen(built, by_name, reads)
    with django_db_blocker.unblock():
        transaction.set_rollback(True)
        atomic.__exit__(None, None, None)
        rules.forget_rules()  # the rolled-back rule set must not stay cached for other modules


# --- reading responses ---------------------------------------------------------------------------


def entries(reply: Reply, mode: str | None = None) -> list[dict]:
    body = reply.json or {}
    return [
        e
        for e in body.get("entry", [])
        if "resource" in e
        and e["resource"]["resourceType"] != "OperationOutcome"
        and (mode is None or e.get("search", {}).get("mode") == mode)
    ]


def key_of(resource: dict) -> str:
    return f"{resource['resourceType']}/{resource['id']}"


def keys(reply: Reply, mode: str | None = None) -> list[str]:
    return [key_of(e["resource"]) for e in entries(reply, mode)]


def link(reply: Reply, relation: str) -> str | None:
    return next((x["url"] for x in (reply.json or {}).get("link", []) if x["relation"] == relation), None)


def cursors(reply: Reply) -> str:
    """The paging cursors in the links, decoded: their JSON carries sort values of real rows."""
    out = []
    for item in (reply.json or {}).get("link", []):
        for name, value in parse_qsl(urlsplit(item["url"]).query):
            if name == "_page":
                payload = unquote(value).rsplit(".", 1)[0]
                try:
                    out.append(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode())
                except ValueError:
                    out.append(payload)
    return "\n".join(out)


def leaked(seen: Seen, persona: str, text: str, asked: str) -> list[str]:
    """Markers of resources the persona may not read, and (researcher) real identifying values, found
    in `text`. A value the caller typed into its own request (`asked`) does not count."""
    readable = seen.readable(persona)
    # Case-insensitive: sort values travel lower-cased (normalised) inside paging cursors.
    text, asked = text.lower(), (asked + unquote_plus(asked)).lower()

    def shown(value: str) -> bool:
        return value.lower() in text and value.lower() not in asked

    found = [
        f"{key} ({marker})"
        for key, marker in seen.world.markers.items()
        if key not in readable and shown(marker)
    ]
    if persona == "researcher":
        found += [f"secret {s!r}" for s in seen.world.researcher_secrets if shown(s)]
    return found


def assert_outcome(reply: Reply, statuses: set[int], what: str) -> None:
    assert reply.status in statuses, (
        f"{what}: {reply.status} (expected {sorted(statuses)}): {reply.text[:300]}"
    )
    assert (reply.json or {}).get("resourceType") == "OperationOutcome", f"{what}: not an OperationOutcome"


# --- the queries hypothesis draws --------------------------------------------------------------------

PATIENT_IDS = [p.id for p in PATIENTS] + ["nobody"]
DOCTORS = list(PRACTITIONERS)
ORGS = list(ORGANIZATIONS)
FAMILIES = [p.family for p in PATIENTS]
PERSON_NAMES = FAMILIES + [p.given for p in PATIENTS] + ["que", "RAVENS", "Nobody"]
DOCTOR_NAMES = [v[0] for v in PRACTITIONERS.values()] + ["Wilhelmina", "ab"]
ORG_NAMES = ["Aldersgate", "aldersgate cardiology", "Brookfield Clinic", "Nowhere"]
VALUES = ["58", "64", "72", "76", "88", "100", "101", "105", "130", "70.0"]
DATES = ["2024", "2024-01", "2024-01-03", "2024-01-05", "2024-01-07T09:30:00Z", "2023-12-31", "2024-02"]
BIRTH = [p.birth_date for p in PATIENTS] + ["1961", "1975-09", "1950-06-21"]


def prefix(numbers: bool = True) -> st.SearchStrategy[str]:
    return st.sampled_from(["", "eq", "ne", "gt", "lt", "ge", "le"] + (["ap"] if numbers else ["sa", "eb"]))


def references(target: str, ids: list[str]) -> st.SearchStrategy[str]:
    """One or several ids (search.html#reference), bare or typed."""
    chosen = st.lists(st.sampled_from(ids), min_size=1, max_size=3, unique=True)
    return st.tuples(chosen, st.booleans()).map(
        lambda pair: ",".join(f"{target}/{i}" if pair[1] else i for i in pair[0])
    )


def param(name: str, values: st.SearchStrategy[str]) -> st.SearchStrategy[list[tuple[str, str]]]:
    return values.map(lambda v: [(name, v)])


def pick(name: str, *values: str) -> st.SearchStrategy[list[tuple[str, str]]]:
    return param(name, st.sampled_from(values))


def prefixed(name: str, values: list[str], numbers: bool = False) -> st.SearchStrategy:
    return param(name, st.tuples(prefix(numbers), st.sampled_from(values)).map("".join))


def date_range(name: str, values: list[str]) -> st.SearchStrategy[list[tuple[str, str]]]:
    """`name=geX&name=leY`: two bounds of one parameter (merged into one range by the engine)."""
    low, high = st.sampled_from(["ge", "gt"]), st.sampled_from(["le", "lt"])
    return st.tuples(low, st.sampled_from(values), high, st.sampled_from(values)).map(
        lambda t: [(name, t[0] + t[1]), (name, t[2] + t[3])]
    )


def quantity() -> st.SearchStrategy[str]:
    units = st.sampled_from(["", "||kg", f"|{UCUM}|kg", "||/min"])
    return st.tuples(prefix(), st.sampled_from(VALUES), units).map("".join)


CODES = st.sampled_from([HEART_RATE, f"{LOINC}|{BODY_WEIGHT}", f"{HEART_RATE},{BODY_WEIGHT}", "9999-9"])
CONDITION_CODES = st.sampled_from([DIABETES, HYPERTENSION, f"http://snomed.info/sct|{DIABETES}"])
PATIENT_REFS = references("Patient", PATIENT_IDS)
DOCTOR_REFS = references("Practitioner", DOCTORS)
ORG_REFS = references("Organization", ORGS)
MRNS = st.sampled_from([p.mrn for p in PATIENTS]).flatmap(lambda m: st.sampled_from([m, f"{MRN_SYSTEM}|{m}"]))

CRITERIA = {
    "Patient": [
        pick("gender", "male", "female", "male,female"),
        param("name", st.sampled_from(PERSON_NAMES)),
        param("name:exact", st.sampled_from(FAMILIES)),
        pick("name:contains", "uenb", "wood", "ORTH"),
        pick("gender:not", "male", "female"),
        pick("general-practitioner:missing", "true", "false"),
        pick("birthdate:missing", "false"),
        param("family", st.sampled_from(PERSON_NAMES)),
        prefixed("birthdate", BIRTH),
        date_range("birthdate", BIRTH),
        param("organization", ORG_REFS),
        param("general-practitioner", DOCTOR_REFS),
        param("identifier", MRNS),
        param("phone", st.sampled_from([p.phone for p in PATIENTS])),
        param("address-city", st.sampled_from([p.city for p in PATIENTS])),
        param(
            "_id", st.lists(st.sampled_from(PATIENT_IDS), min_size=1, max_size=3, unique=True).map(",".join)
        ),
        param("link", PATIENT_REFS),
        param("_has:Observation:patient:code", CODES),
        param("_has:Observation:patient:value-quantity", quantity()),
        param("_has:Condition:patient:code", CONDITION_CODES),
        param("_has:Encounter:patient:service-provider", ORG_REFS),
        param("_has:CareTeam:subject:participant", DOCTOR_REFS),
        param("organization.name", st.sampled_from(ORG_NAMES)),
        param("general-practitioner:Practitioner.name", st.sampled_from(DOCTOR_NAMES)),
    ],
    "Observation": [
        param("code", CODES),
        param("value-quantity", quantity()),
        prefixed("date", DATES),
        date_range("date", DATES),
        param("subject", PATIENT_REFS),
        param("patient", PATIENT_REFS),
        param("subject:Patient", references("Patient", PATIENT_IDS).map(lambda v: v.replace("Patient/", ""))),
        param("performer", DOCTOR_REFS),
        pick("category", "vital-signs"),
        pick("code:not", HEART_RATE),
        pick("performer:missing", "true", "false"),
        param("subject:Patient.name", st.sampled_from(PERSON_NAMES)),
        param("patient.organization", ORG_REFS),
        param("patient.organization.name", st.sampled_from(ORG_NAMES)),
        pick("subject:Patient.gender", "male", "female"),
        prefixed("subject:Patient.birthdate", BIRTH),
        param("subject:Patient.identifier", MRNS),
        param("performer:Practitioner.name", st.sampled_from(DOCTOR_NAMES)),
        param("patient.general-practitioner", DOCTOR_REFS),
    ],
    "Condition": [
        param("code", CONDITION_CODES),
        pick("code:not", DIABETES),
        param("subject", PATIENT_REFS),
        param("patient", PATIENT_REFS),
        prefixed("recorded-date", DATES),
        param("patient.name", st.sampled_from(PERSON_NAMES)),
        param("patient.organization", ORG_REFS),
    ],
    "Encounter": [
        param("subject", PATIENT_REFS),
        param("patient", PATIENT_REFS),
        param("service-provider", ORG_REFS),
        prefixed("date", DATES),
        pick("status", "finished", "in-progress"),
        pick("class", "AMB"),
        param("service-provider.name", st.sampled_from(ORG_NAMES)),
        param("patient.name", st.sampled_from(PERSON_NAMES)),
    ],
    "Organization": [
        param("name", st.sampled_from(ORG_NAMES)),
        param("partof", ORG_REFS),
        pick("partof:missing", "true", "false"),
        param("_id", st.lists(st.sampled_from(ORGS), min_size=1, max_size=2, unique=True).map(",".join)),
        param("partof.name", st.sampled_from(ORG_NAMES)),
        pick("_has:Patient:organization:gender", "male", "female"),
        param("_has:PractitionerRole:organization:practitioner", DOCTOR_REFS),
        param("_has:Encounter:service-provider:patient", PATIENT_REFS),
    ],
    "Practitioner": [
        param("name", st.sampled_from(DOCTOR_NAMES)),
        pick("name:contains", "er", "WELL"),
        pick("active", "true", "false"),
        param("_id", st.lists(st.sampled_from(DOCTORS), min_size=1, max_size=2, unique=True).map(",".join)),
        param("_has:PractitionerRole:practitioner:organization", ORG_REFS),
        param("_has:Observation:performer:value-quantity", quantity()),
        param("_has:Observation:performer:subject", PATIENT_REFS),
        param("_has:MedicationRequest:requester:subject", PATIENT_REFS),
        param("_has:CareTeam:participant:subject", PATIENT_REFS),
        param("_has:Patient:general-practitioner:gender", st.sampled_from(["male", "female"])),
    ],
}

for _criteria in CRITERIA.values():  # every type has the common ones
    _criteria.append(prefixed("_lastUpdated", ["2020-01-01", "2999"]))

ITERATE = ["Patient:organization", "Patient:general-practitioner", "Patient:link", "Organization:partof",
           "PractitionerRole:organization", "*"]  # fmt: skip
INCLUDES = {
    "Patient": ["Patient:organization", "Patient:general-practitioner", "Patient:link", "*"],
    "Observation": ["Observation:subject", "Observation:patient", "Observation:performer",
                    "Observation:subject:Patient", "*"],
    "Condition": ["Condition:subject", "Condition:patient", "*"],
    "Encounter": ["Encounter:service-provider", "Encounter:subject", "Encounter:patient"],
    "Organization": ["Organization:partof", "*"],
    "Practitioner": ["*"],
}  # fmt: skip
REVINCLUDES = {
    "Patient": ["Observation:subject", "Observation:patient", "Condition:subject", "Encounter:patient",
                "RelatedPerson:patient", "CareTeam:subject", "MedicationRequest:subject", "Patient:link", "*"],
    "Observation": ["*"],
    "Condition": [],
    "Encounter": ["Observation:encounter"],
    "Organization": ["Patient:organization", "PractitionerRole:organization", "Encounter:service-provider",
                     "Organization:partof"],
    "Practitioner": ["PractitionerRole:practitioner", "Observation:performer", "MedicationRequest:requester",
                     "Patient:general-practitioner", "CareTeam:participant"],
}  # fmt: skip
SORTS = {
    "Patient": ["name", "family", "birthdate", "gender", "_id", "organization"],
    "Observation": ["date", "value-quantity", "code", "patient", "_id", "_lastUpdated"],
    "Condition": ["recorded-date", "code", "patient"],
    "Encounter": ["date", "status", "service-provider"],
    "Organization": ["name", "_id"],
    "Practitioner": ["name", "family", "_id"],
}
RESULT = ("_include", "_revinclude", "_count", "_total", "_summary", "_sort")


@dataclass(frozen=True)
class Query:
    path: str  # "Observation", "Patient/pa1/$everything", "Patient/$everything"
    params: tuple[tuple[str, str], ...]

    @property
    def resource_type(self) -> str:
        """The searched type: "Observation" of `Patient/pa1/Observation`, "*" for a system search."""
        if self.everything:
            return "Patient"
        return self.path.rsplit("/", 1)[-1] if self.path else "*"

    @property
    def searched_types(self) -> list[str]:
        if self.path:
            return [self.resource_type]
        return [t for t in (self.value("_type") or "").split(",") if t]

    @property
    def everything(self) -> bool:
        return self.path.endswith("$everything")

    @property
    def criteria(self) -> list[tuple[str, str]]:
        return [(n, v) for n, v in self.params if n.split(":", 1)[0] not in RESULT]

    def value(self, name: str) -> str | None:
        return next((v for n, v in self.params if n == name), None)

    def __str__(self) -> str:
        return self.path + ("?" + urlencode(self.params) if self.params else "")


@st.composite
def searches(draw, resource_type: str, path: str | None = None) -> Query:
    params: list[tuple[str, str]] = []
    # sampled_from, not one_of: every criterion of the type is about as likely as any other.
    least = 0 if path else 1
    for criterion in draw(st.lists(st.sampled_from(CRITERIA[resource_type]), min_size=least, max_size=3)):
        params += draw(criterion)
    for spec in draw(st.lists(st.sampled_from(INCLUDES[resource_type]), max_size=2, unique=True)):
        params.append(("_include", spec))
    for spec in draw(st.lists(st.sampled_from(REVINCLUDES[resource_type] or ["*"]), max_size=1)):
        params.append(("_revinclude", spec))
    if any(n in ("_include", "_revinclude") for n, _ in params) and draw(st.booleans()):
        iterate = draw(st.sampled_from(["_include:iterate", "_revinclude:iterate"]))
        params.append((iterate, draw(st.sampled_from(ITERATE))))
    sort = draw(st.lists(st.sampled_from(SORTS[resource_type]), max_size=2, unique=True))
    if sort:
        params.append(("_sort", ",".join(draw(st.sampled_from(["", "-"])) + key for key in sort)))
    params += draw(st.sampled_from(PAGING))
    return Query(path or resource_type, tuple(params))


@st.composite
def compartment_searches(draw) -> Query:
    """`Patient/[id]/[type]?...` and `Patient/[id]/*` (search.html#compartments), the compartment
    being anyone's."""
    member = draw(st.sampled_from(["Observation", "Condition", "Encounter", "*"]))
    owner = draw(st.sampled_from(PATIENT_IDS))
    if member == "*":
        return Query(f"Patient/{owner}/*", tuple(draw(st.sampled_from(PAGING))))
    return draw(searches(member, f"Patient/{owner}/{member}"))


@st.composite
def system_searches(draw) -> Query:
    """`[base]?_type=...` (search.html#all): common parameters only, over several types at once."""
    types = draw(
        st.sampled_from(["Patient,Observation", "Observation,Condition", "Practitioner,Organization,Patient"])
    )
    params = [("_type", types)]
    every = [p.id for p in PATIENTS] + [f"obs-{p.id}-hr" for p in PATIENTS] + DOCTORS + ORGS + ["cond-pb1"]
    if draw(st.booleans()):
        params.append(
            ("_id", ",".join(draw(st.lists(st.sampled_from(every), min_size=1, max_size=4, unique=True))))
        )
    params += draw(prefixed("_lastUpdated", ["2020-01-01", "2999"]))
    if draw(st.booleans()):
        params.append(("_sort", draw(st.sampled_from(["_id", "-_id", "_lastUpdated"]))))
    params += draw(st.sampled_from(PAGING))
    return Query("", tuple(params))


PAGING = [[], [("_count", "2")], [("_count", "3")], [("_count", "1"), ("_total", "accurate")], [("_count", "0")],
          [("_total", "accurate")], [("_summary", "count")], [("_summary", "true")]]  # fmt: skip


@st.composite
def everythings(draw) -> Query:
    target = draw(st.sampled_from([*PATIENT_IDS, None]))
    path = "Patient/$everything" if target is None else f"Patient/{target}/$everything"
    params: list[tuple[str, str]] = []
    types = draw(
        st.sampled_from([None, "Observation", "Practitioner,Organization", "Patient,Condition,Practitioner"])
    )
    if types:
        params.append(("_type", types))
    params += draw(st.sampled_from([[], [("_count", "3")], [("_summary", "count")]]))
    return Query(path, tuple(params))


def queries(kind: str) -> st.SearchStrategy[Query]:
    special = {"$everything": everythings, "compartment": compartment_searches, "system": system_searches}
    return special[kind]() if kind in special else searches(kind)


# --- the oracle: what each persona should get ----------------------------------------------------------

# Elements the research rule redacts, as the Patient search parameters that read them (search
# parameters and sort keys reading them must be refused: authz/filters.py), plus its explicit blocks.
# (Only `address` itself is blocked: the address is not redacted, so `address-city` may be searched.)
RESEARCH_BLOCKED = {"name", "family", "given", "phonetic", "birthdate", "telecom", "phone", "email",
                    "identifier", "address"}  # fmt: skip
# The statistician's rule removes Observation.subject and Condition.subject: the parameters that read
# it are refused, and nothing joins those resources to their patient (compartments, $everything).
STATS_BLOCKED = {"Observation": {"subject", "patient"}, "Condition": {"subject", "patient"}}
HIDDEN_MEMBERS = {"statistician": {"Observation", "Condition"}}
NURSE_TYPES = {"Patient", "Practitioner", "Observation"}
# Personas whose rules grant `everything` on exactly what they grant `read` (dr-a's care-team rule,
# for one, grants read and search only).
EVERYTHING_AS_READ = {"admin", "statistician", *(p.id for p in PATIENTS)}
# Personas whose rules check some searched type's bodies in Python: SQL cannot count for them.
UNCOUNTED = {"nurse": {"Observation"}}
CHAIN_TARGET = {"patient": "Patient", "organization": "Organization", "service-provider": "Organization",
                "partof": "Organization"}  # fmt: skip


def split_criterion(resource_type: str, name: str) -> tuple[str, str, str, str] | None:
    """("chain", reference code, target type, rest) or ("has", source type, reference code, rest);
    None for a plain parameter."""
    if name.startswith("_has:"):
        _, source, reference, rest = name.split(":", 3)
        return ("has", source, reference, rest)
    if "." in name:
        head, rest = name.split(".", 1)
        code, _, target = head.partition(":")
        return ("chain", code, target or CHAIN_TARGET[code], rest)
    return None


def researcher_refuses(resource_type: str, name: str) -> bool:
    split = split_criterion(resource_type, name)
    if split is None:
        return resource_type == "Patient" and name.split(":", 1)[0] in RESEARCH_BLOCKED
    if split[0] == "has":
        return researcher_refuses(split[1], split[3])
    return (resource_type == "Patient" and split[1] in RESEARCH_BLOCKED) or researcher_refuses(
        split[2], split[3]
    )


def statistician_refuses(resource_type: str, name: str) -> bool:
    split = split_criterion(resource_type, name)
    if split is None:
        return name.split(":", 1)[0] in STATS_BLOCKED.get(resource_type, ())
    if split[0] == "has":
        return split[2] in STATS_BLOCKED.get(split[1], ()) or statistician_refuses(split[1], split[3])
    return split[1] in STATS_BLOCKED.get(resource_type, ()) or statistician_refuses(split[2], split[3])


def statistician_refusal(query: Query) -> set[int] | None:
    """Everything but what reads the removed patient reference of Observations and Conditions:
    criteria, sort keys and includes naming it, and compartment searches of those types (403)."""
    if query.everything:
        return None
    if query.path.startswith("Patient/") and query.resource_type in STATS_BLOCKED:
        return {403}  # Patient/x/Observation: membership is the removed reference
    for name, value in query.params:
        base = name.split(":", 1)[0]
        if name == "_sort":
            if any(k.lstrip("-") in STATS_BLOCKED.get(query.resource_type, ()) for k in value.split(",")):
                return {403}
        elif base in ("_include", "_revinclude"):
            source, _, rest = value.partition(":")
            if rest.split(":")[0] in STATS_BLOCKED.get(source, ()):
                return {403}
        elif base not in RESULT and statistician_refuses(query.resource_type, name):
            return {403}
    return None


def nurse_refusal(query: Query) -> set[int] | None:
    """Patients, Practitioners and Observations only; no `_has` over Observations (the rule that
    grants them checks bodies in Python)."""
    if query.everything or not set(query.searched_types) <= NURSE_TYPES:
        return {403}
    if any(name.startswith("_has:Observation:") for name, _ in query.params):
        return {403}
    return None


def refusal(persona: str, query: Query) -> set[int] | None:
    """The statuses the rules answer `query` with, when they refuse it (a set: some refusals may be
    either), or None when it must succeed (200)."""
    if persona == "public":
        return {401}
    if persona == "dr-inactive":  # its identity filter fails: no rule matches at all
        return {403}
    if persona == "statistician":
        return statistician_refusal(query)
    if persona == "nurse":
        return nurse_refusal(query)
    if query.everything:
        # `everything` is granted to patients, clinicians and the admin only.
        return {403} if persona in ("researcher", "rp-pa1") else None
    if persona != "researcher":
        return None
    if not set(query.searched_types) <= {"Patient", "Observation"}:
        return {403}
    ambiguous = False
    for name, value in query.params:
        base = name.split(":", 1)[0]
        if name == "_sort":
            if query.resource_type == "Patient" and any(
                k.lstrip("-") in RESEARCH_BLOCKED for k in value.split(",")
            ):
                return {403}
        elif base in ("_include", "_revinclude"):
            if value == "Patient:general-practitioner":
                return {403}
            # `*` covers Patient:general-practitioner where a Patient is the source: refusing all of
            # it, or only following what may be followed, are both safe.
            ambiguous |= value == "*"
        elif base not in RESULT and researcher_refuses(query.resource_type, name):
            return {403}
    return {200, 403} if ambiguous else None


class Oracle:
    """The persona's expected matches: the admin's, restricted to what the persona may read, with
    every chain and `_has` evaluated over what the persona may read (rewritten into id lists)."""

    def __init__(self, seen: Seen):
        self.seen = seen

    def admin_reply(self, path: str, params: list[tuple[str, str]]) -> Reply:
        """The admin's whole answer (one page; cached: shared by every persona)."""
        cache_key = (path, tuple(params))
        if cache_key not in self.seen.admin_cache:
            reply = self.seen.callers[ADMIN].get(path, [*params, ("_count", "1000")])
            assert reply.status == 200, f"admin {path}?{params}: {reply.status} {reply.text[:300]}"
            assert link(reply, "next") is None
            self.seen.admin_cache[cache_key] = reply
        return self.seen.admin_cache[cache_key]

    def admin(self, path: str, params: list[tuple[str, str]]) -> list[str]:
        """The admin's match keys, in order."""
        return keys(self.admin_reply(path, params), "match")

    def expected(
        self,
        persona: str,
        resource_type: str,
        criteria: list[tuple[str, str]],
        sort=(),
        path: str | None = None,
    ) -> list[str]:
        readable = self.seen.readable(persona)
        rewritten = []
        for name, value in criteria:
            split = split_criterion(resource_type, name)
            if split is None:
                rewritten.append((name, value))
                continue
            kind, first, second, rest = split
            inner_type = first if kind == "has" else second
            inner = self.expected(persona, inner_type, [(rest, value)])
            if not inner:
                return []  # a criterion nothing the persona may see satisfies
            ids = ",".join(k.split("/", 1)[1] for k in inner)
            if kind == "has":
                rewritten.append((f"_has:{first}:{second}:_id", ids))
            else:
                rewritten.append((first, ",".join(inner)))
        hidden = HIDDEN_MEMBERS.get(persona, ()) if path is not None and path.startswith("Patient/") else ()
        return [
            k
            for k in self.admin(resource_type if path is None else path, rewritten + list(sort))
            if k in readable and k.split("/")[0] not in hidden
        ]


# --- checking one persona's answer to one query --------------------------------------------------------


def fetch_all(caller: Caller, query: Query) -> list[Reply]:
    """The first page and every page its `next` links lead to."""
    pages = [caller.get(query.path, list(query.params))]
    while pages[-1].status == 200 and (following := link(pages[-1], "next")) and len(pages) < 50:
        pages.append(caller.follow(following))
    return pages


def check_entry(seen: Seen, persona: str, entry: dict, summary: str | None, what: str) -> str:
    resource = entry["resource"]
    key = key_of(resource)
    assert key in seen.readable(persona), f"{what}: returned {key}, which {persona} may not read"
    read = seen.read_body(persona, key)
    if summary == "true":
        # A summary is a subset of the read: every element it keeps has the read's value.
        for element, value in resource.items():
            if element != "meta":
                assert read.get(element) == value, f"{what}: {key}.{element} differs from the read"
    else:
        assert resource == read, f"{what}: {key} differs from what a read returns"
    return key


def check_answer(seen: Seen, oracle: Oracle, persona: str, query: Query) -> None:
    what = f"{persona} GET {query}"
    caller = seen.callers[persona]
    pages = fetch_all(caller, query)
    for page in pages:
        assert page.status != 500, f"{what}: 500 {page.text[:300]}"
        found = leaked(seen, persona, page.text + cursors(page), str(query))
        assert not found, f"{what}: leaked {found}"
    first = pages[0]
    refused = refusal(persona, query)
    parts = query.path.split("/")
    if (
        refused is None
        and query.everything
        and len(parts) == 3
        and f"Patient/{parts[1]}" not in seen.readable(persona)
    ):
        # The record of a patient the persona may not read does not exist for it: 404, as a read.
        assert first.status == 404, f"{what}: {first.status} for an unreadable patient's record"
        return
    if refused is not None and first.status != 200:
        assert_outcome(first, refused, what)
        return
    assert first.status == 200 and (refused is None or 200 in refused), (
        f"{what}: {first.status} {first.text[:300]}"
    )

    summary = query.value("_summary")
    matches: list[str] = []
    for page in pages:
        page_keys = set()
        for entry in entries(page):
            page_keys.add(check_entry(seen, persona, entry, summary, what))
        matches += keys(page, "match")
        # (a) an include must be linked to something returned with it: otherwise it tells of a
        # reference held by a resource the persona did not get.
        if not query.everything:
            for included in keys(page, "include"):
                assert any(seen.linked_as(persona, included, other) for other in page_keys - {included}), (
                    f"{what}: included {included} is linked to nothing on its page by a reference "
                    f"{persona} may see"
                )
    assert len(matches) == len(set(matches)), f"{what}: a match is returned twice: {matches}"
    totals = {page.json.get("total") for page in pages} - {None}

    if query.everything:
        check_everything(seen, oracle, persona, query, pages, what)
        return
    sort = [("_sort", query.value("_sort"))] if query.value("_sort") else []
    expected = oracle.expected(persona, query.resource_type, query.criteria, sort, path=query.path)
    note(f"{persona}: expected {expected}")
    event(f"{persona}: {'some' if expected else 'no'} matches")
    if summary == "count" or query.value("_count") == "0":
        assert not matches, f"{what}: _summary=count returned entries"
    elif sort:
        assert matches == expected, f"{what}: {matches} != expected {expected}"
    else:
        assert sorted(matches) == sorted(expected), (
            f"{what}: {sorted(matches)} != expected {sorted(expected)}"
        )
    assert totals <= {len(expected)}, f"{what}: total {totals} but {len(expected)} readable matches"
    counted = not set(query.searched_types) & UNCOUNTED.get(persona, set())
    if counted and (
        summary == "count" or query.value("_total") == "accurate" or query.value("_count") == "0"
    ):
        assert totals == {len(expected)}, f"{what}: no total"


def check_everything(seen: Seen, oracle: Oracle, persona: str, query: Query, pages: list[Reply], what: str):
    """$everything: a part of the admin's record of the same patient(s), without the resources whose
    link to the patient the persona's rules hide, and every supporting resource (mode include)
    referred to, by a reference the persona may see, by a part of the record the persona gets."""
    readable = seen.readable(persona)
    asked = oracle.admin_reply(query.path, [(n, v) for n, v in query.params if n == "_type"])
    mine = fetch_all(seen.callers[persona], Query(query.path, (("_count", "1000"),)))
    parts = {key for page in mine for key in keys(page, "match")}
    for page in pages:
        for key in keys(page):
            assert key in keys(asked), f"{what}: {key} is not in the admin's record"
        matches = keys(page, "match")
        hidden = [k for k in matches if k.split("/")[0] in HIDDEN_MEMBERS.get(persona, ())]
        assert not hidden, (
            f"{what}: {hidden} are in the record only through a reference {persona} may not see"
        )
        for included in keys(page, "include"):
            assert any(seen.linked_as(persona, included, part) for part in parts), (
                f"{what}: {included} is returned although no part of the record {persona} gets refers "
                "to it (it reveals what a hidden or unreadable part refers to)"
            )
    if persona in EVERYTHING_AS_READ and query.path.count("/") == 2 and query.value("_summary") != "count":
        # Where the rules grant `everything` exactly as `read`, the record is what the persona may read
        # of the admin's record, less what only a hidden reference places in it.
        expected = [k for k in keys(asked, "match") if k in readable]
        expected = [k for k in expected if k.split("/")[0] not in HIDDEN_MEMBERS.get(persona, ())]
        got = [k for page in pages for k in keys(page, "match")]
        assert sorted(got) == sorted(expected), f"{what}: {sorted(got)} != expected {sorted(expected)}"


# --- 1. the property --------------------------------------------------------------------------------------


@settings(
    max_examples=int(os.environ.get("LEAKS_EXAMPLES", "10")),
    deadline=None,
    derandomize=not os.environ.get("LEAKS_EXPLORE"),
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
@pytest.mark.parametrize("kind", [*CRITERIA, "compartment", "system", "$everything"])
def test_no_search_reveals_what_a_read_refuses(world, kind, data):
    # One hypothesis run per searched type, compartment and system search and $everything, so that
    # each gets its share of the examples: 9 x 10 by default.
    query = data.draw(queries(kind), label="query")
    oracle = Oracle(world)
    for persona in NAMES:
        check_answer(world, oracle, persona, query)


# --- 2. named regressions ----------------------------------------------------------------------------
# Each pins one leak known from other FHIR servers. Where it helps, the admin's answer to the same
# query is checked first: it shows the query does match the hidden data, so an empty answer to the
# persona is the rules' doing and not a query that matches nothing.


def get(world: Seen, persona: str, path: str, params: list[tuple[str, str]] | None = None) -> Reply:
    reply = world.callers[persona].get(path, params)
    found = leaked(world, persona, reply.text + cursors(reply), path + "?" + urlencode(params or []))
    assert not found, f"{persona} GET {path} {params}: leaked {found}"
    return reply


def found(world: Seen, persona: str, path: str, params: list[tuple[str, str]] | None = None) -> list[str]:
    """The sorted keys of every entry (matches and includes) of a successful search."""
    reply = get(world, persona, path, params)
    assert reply.status == 200, f"{persona} GET {path} {params}: {reply.status} {reply.text[:300]}"
    return sorted(keys(reply))


def obs(*ids: str) -> list[str]:
    return sorted(f"Observation/{i}" for i in ids)


def test_has_does_not_infer_values_of_unreadable_observations(world):
    # Above 100: pb1's heart rate (130) and weight (101), pa2's weight (105); nothing of pa1's.
    above = [("_has:Observation:patient:value-quantity", "gt100")]
    assert found(world, ADMIN, "Patient", above) == ["Patient/pa2", "Patient/pb1"]
    assert found(world, "pa1", "Patient", above) == []
    assert found(world, "dr-b", "Patient", above) == ["Patient/pb1"]  # not org-a's pa2
    # dr-b performed pa1's heart rate (88/min) but may not read it: "which practitioners performed an
    # Observation above 80" must not answer dr-b, which dr-b may read.
    performed = [("_has:Observation:performer:value-quantity", "gt80")]
    assert "Practitioner/dr-b" in found(world, ADMIN, "Practitioner", performed)
    assert found(world, "dr-b", "Practitioner", performed) == []


@pytest.mark.parametrize(
    "persona, expected",
    [
        ("pa1", []),
        ("pa2", obs("obs-pa2-bw")),
        ("rp-pa1", []),
        ("dr-a", obs("obs-pa2-bw", "obs-pb1-hr", "obs-pb1-bw")),  # pb1 through the care team
        ("dr-a1", []),
        ("dr-b", obs("obs-pb1-hr", "obs-pb1-bw")),
        ("researcher", obs("obs-pa2-bw", "obs-pb1-hr", "obs-pb1-bw")),
    ],
)
def test_value_search_returns_only_readable_observations(world, persona, expected):
    query = [("value-quantity", "gt100")]
    assert found(world, persona, "Observation", query) == expected
    counted = get(world, persona, "Observation", [*query, ("_summary", "count")])
    assert counted.json["total"] == len(expected)


def test_chain_through_an_unreadable_patient_matches_nothing(world):
    chain = [("subject:Patient.name", "Thistlewood")]  # pb1's family name
    assert found(world, ADMIN, "Observation", chain) == obs("obs-pb1-hr", "obs-pb1-bw")
    assert found(world, "pa1", "Observation", chain) == []
    assert get(world, "pa1", "Observation", [*chain, ("_summary", "count")]).json["total"] == 0
    # The same through the other spelling of the chain.
    assert found(world, "pa1", "Observation", [("patient.name", "Thistlewood")]) == []


def test_include_does_not_add_a_resource_the_caller_may_not_read(world):
    query = [("_include", "Observation:performer")]
    assert "Practitioner/dr-b" in found(world, ADMIN, "Observation", [("patient", "pa1"), *query])
    # pa1's heart rate was performed by dr-b; pa1 may not read Practitioners.
    reply = get(world, "pa1", "Observation", query)
    assert sorted(keys(reply, "match")) == obs("obs-pa1-hr", "obs-pa1-bw", "obs-pa1-old-hr", "obs-pa1-old-bw")
    assert keys(reply, "include") == []


def test_revinclude_does_not_add_resources_of_another_compartment(world):
    query = [
        ("_id", "dr-b"),
        ("_revinclude", "Observation:performer"),
        ("_revinclude", "Patient:general-practitioner"),
    ]
    # obs-pa1-hr (performed by dr-b) and pa2 (whose GP is dr-b) are org-a's, not dr-b's to read.
    assert found(world, ADMIN, "Practitioner", query) == [
        "Observation/obs-pa1-hr",
        "Patient/pa2",
        "Practitioner/dr-b",
    ]
    assert found(world, "dr-b", "Practitioner", query) == ["Practitioner/dr-b"]
    # And from the patient's side: pb1's care team names dr-a, whom pb1 may not read.
    assert found(world, "pb1", "CareTeam", [("_include", "CareTeam:participant")]) == ["CareTeam/ct-pb1"]


@pytest.mark.parametrize(
    "param, value",
    [("patient", "Patient/pb1"), ("subject", "Patient/pb1"), ("patient", "pb1"), ("subject:Patient", "pb1")],
)
def test_patient_and_subject_are_narrowed_alike(world, param, value):
    assert found(world, ADMIN, "Observation", [(param, value)]) == obs("obs-pb1-hr", "obs-pb1-bw")
    assert found(world, "pa1", "Observation", [(param, value)]) == []


def test_compartment_search_of_another_patient_is_empty(world):
    assert found(world, ADMIN, "Patient/pb1/Observation") == obs("obs-pb1-hr", "obs-pb1-bw")
    assert found(world, "pa1", "Patient/pb1/Observation") == []
    assert found(world, "pa1", "Patient/pb1/*") == []


def test_linked_patients_share_their_records_with_each_other_only(world):
    old = obs("obs-pa1-old-hr", "obs-pa1-old-bw")
    # pa1's Patient.link names pa1-old: the same person, recorded twice.
    assert found(world, "pa1", "Observation", [("patient", "pa1-old")]) == old
    assert world.callers["pa1"].get("Observation/obs-pa1-old-hr").status == 200
    assert found(world, "pa2", "Observation", [("patient", "pa1-old")]) == []
    assert world.callers["pa2"].get("Observation/obs-pa1-old-hr").status == 404


@pytest.mark.parametrize("param, value", [("patient", "pa1,pb1"), ("subject", "Patient/pb1,Patient/pa1")])
def test_several_compartment_ids_return_only_the_callers(world, param, value):
    assert len(found(world, ADMIN, "Observation", [(param, value)])) == 4
    assert found(world, "pa1", "Observation", [(param, value)]) == obs("obs-pa1-hr", "obs-pa1-bw")


@pytest.mark.parametrize(
    "path, params",
    [
        ("Patient", [("name", "Quenby")]),
        ("Patient", [("family", "Quenby")]),
        ("Patient", [("birthdate", "1961-04-17")]),
        ("Patient", [("birthdate", "ge1961")]),
        ("Patient", [("address", "Wexcombe")]),
        ("Patient", [("telecom", "+1-555-0101-771")]),
        ("Patient", [("phone", "+1-555-0101-771")]),
        ("Patient", [("identifier", "MRN-40117")]),
        ("Patient", [("_sort", "name")]),
        ("Patient", [("_sort", "-name")]),
        ("Patient", [("_sort", "family")]),
        ("Patient", [("_sort", "birthdate")]),
        ("Patient", [("_sort", "-birthdate")]),
        ("Patient", [("_include", "Patient:general-practitioner")]),
        ("Observation", [("subject:Patient.name", "Quenby")]),
        ("Observation", [("patient.birthdate", "1961-04-17")]),
        ("Observation", [("patient.identifier", "MRN-40117")]),
        (
            "Observation",
            [("_include", "Observation:subject"), ("_include:iterate", "Patient:general-practitioner")],
        ),
    ],
)
def test_researcher_cannot_query_by_a_redacted_or_blocked_element(world, path, params):
    assert_outcome(get(world, "researcher", path, params), {403}, f"researcher {path} {params}")


def test_researcher_cannot_bracket_a_birth_date(world):
    bracket = [("birthdate", "ge1961-04-17"), ("birthdate", "le1961-04-17")]
    reply = world.callers["researcher"].get("Patient", bracket)
    assert_outcome(reply, {403}, "researcher Patient?birthdate=ge1961-04-17&birthdate=le1961-04-17")


def test_researcher_reads_patients_redacted(world):
    for spec in PATIENTS:
        body = world.callers["researcher"].get(f"Patient/{spec.id}").json
        assert "name" not in body and "telecom" not in body and "text" not in body
        assert body["birthDate"] == spec.birth_date[:4]
        (identifier,) = body["identifier"]
        assert identifier["system"] == MRN_SYSTEM and re.fullmatch(r"[0-9a-f]{32}", identifier["value"])
        assert {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
            "code": "REDACTED",
        } in body["meta"]["security"]


@pytest.mark.parametrize("persona", ["pa1", "pa2", "rp-pa1", "dr-a", "dr-a1", "dr-b", "researcher"])
@pytest.mark.parametrize("params", [[("_summary", "count")], [("_total", "accurate"), ("_count", "1")]])
def test_counts_never_include_unreadable_rows(world, persona, params):
    readable = {k for k in world.readable(persona) if k.startswith("Observation/")}
    assert get(world, ADMIN, "Observation", params).json["total"] == 10
    assert get(world, persona, "Observation", params).json["total"] == len(readable)


@pytest.mark.parametrize(
    "persona, hidden",
    [
        ("pa1", "Observation/obs-pb1-hr"),
        ("dr-b", "Patient/pa1"),
        ("dr-a1", "Encounter/enc-pa1"),
        ("rp-pa1", "Patient/pa2"),
    ],
)
@pytest.mark.parametrize("suffix", ["", "/_history", "/_history/1"])
def test_a_denied_read_answers_like_a_missing_resource(world, persona, hidden, suffix):
    resource_type, _ = hidden.split("/")
    caller = world.callers[persona]
    denied, missing = caller.get(hidden + suffix), caller.get(f"{resource_type}/no-such-id{suffix}")
    # 404 both; or 403 both where the operation is refused outright (rp-pa1 has no history).
    assert denied.status == missing.status == (403 if persona == "rp-pa1" and suffix else 404)
    assert denied.text.replace(hidden.split("/")[1], "ID") == missing.text.replace("no-such-id", "ID")


@pytest.mark.parametrize(
    "persona, method, path",
    [
        ("researcher", "get", "Condition"),
        ("researcher", "get", "Condition/cond-pa1"),
        ("researcher", "get", "Practitioner?name=Bramwell"),
        ("researcher", "get", "Observation/_history"),
        ("researcher", "get", "Patient/pa1/$everything"),
        ("rp-pa1", "get", "Observation/_history"),
        ("rp-pa1", "post", "Observation"),
        ("pa1", "post", "Patient"),
        ("dr-a", "post", "Organization"),
    ],
)
def test_a_type_or_operation_no_rule_grants_is_403(world, persona, method, path):
    caller = world.callers[persona]
    if method == "get":
        reply = caller.get(path)
    else:
        reply = caller.send("post", path, {"resourceType": path, "active": True})
    assert_outcome(reply, {403}, f"{persona} {method} {path}")


@pytest.mark.parametrize(
    "path",
    [
        "Patient",
        "Patient/pa1",
        "Observation?patient=pa1",
        "Observation/_history",
        "_history",
        "Patient/pa1/$everything",
    ],
)
def test_public_is_401(world, path):
    reply = world.callers["public"].get(path)
    assert_outcome(reply, {401}, f"public {path}")
    assert reply.headers.get("WWW-Authenticate", "").startswith("Bearer")
    assert not leaked(world, "public", reply.text, path)


@pytest.mark.parametrize(
    "path",
    [
        "Patient",
        "Patient/pa1",
        "Observation?patient=pa1",
        "CareTeam",
        "Observation/_history",
        "Patient/pa1/$everything",
    ],
)
def test_a_practitioner_failing_the_identity_filter_is_403(world, path):
    # dr-inactive: Practitioner.active = false (and its role at org-a ended).
    assert_outcome(world.callers["dr-inactive"].get(path), {403}, f"dr-inactive {path}")


def observation(subject: str, value: int = 99, **extra) -> dict:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": HEART_RATE}]},
        "subject": {"reference": f"Patient/{subject}"},
        "valueQuantity": {"value": value, "unit": "/min", "system": UCUM, "code": "/min"},
        **extra,
    }


def admin_observations(world: Seen, patient: str) -> list[str]:
    return found(world, ADMIN, "Observation", [("patient", patient)])


def test_a_patient_cannot_create_an_observation_for_another(world):
    before = admin_observations(world, "pb1")
    reply = world.callers["pa1"].send("post", "Observation", observation("pb1"))
    assert_outcome(reply, {403}, "pa1 creates an Observation for pb1")
    assert admin_observations(world, "pb1") == before
    # The refusal is about the subject: its own is accepted.
    assert world.callers["pa1"].send("post", "Observation", observation("pa1")).status == 201


def test_a_patient_cannot_move_its_observation_to_another(world):
    moved = observation("pb1", 72, id="obs-pa1-bw")
    reply = world.callers["pa1"].send("put", "Observation/obs-pa1-bw", moved)
    assert_outcome(reply, {403}, "pa1 moves obs-pa1-bw to pb1")
    after = world.callers[ADMIN].get("Observation/obs-pa1-bw").json
    assert after == world.read_body(ADMIN, "Observation/obs-pa1-bw")
    # Another patient's Observation is not there for it: the update is refused as one it may not make
    # (403, the answer an update that cannot be made gets on any id), never as "not yours".
    taken = observation("pa1", 130, id="obs-pb1-hr")
    assert_outcome(
        world.callers["pa1"].send("put", "Observation/obs-pb1-hr", taken), {403}, "pa1 takes obs-pb1-hr"
    )
    assert world.callers[ADMIN].get("Observation/obs-pb1-hr").json == world.read_body(
        ADMIN, "Observation/obs-pb1-hr"
    )


@pytest.mark.parametrize("persona", ["pa1", "pb1", "dr-a", "dr-a1", "dr-b"])
@pytest.mark.parametrize("path", ["Observation/_history", "Patient/_history", "_history"])
def test_history_lists_only_readable_resources(world, persona, path):
    resource_type = path.split("/")[0] if "/" in path else None
    readable = {
        k for k in world.readable(persona) if resource_type is None or k.startswith(resource_type + "/")
    }
    if persona == "dr-a":
        # dr-a reads pb1's record through the care team rule, which grants read and search only.
        readable = {k for k in readable if "pb1" not in k}
    reply = get(world, persona, path, [("_count", "1000")])
    assert reply.status == 200
    listed = [key_of(e["resource"]) for e in (reply.json.get("entry") or [])]
    # One version each, as the world was written once.
    assert sorted(listed) == sorted(readable)
    for entry in reply.json.get("entry") or []:
        assert entry["resource"] == world.read_body(persona, key_of(entry["resource"]))


def test_everything_of_another_patient_is_not_found_or_empty(world):
    reply = get(world, "pa2", "Patient/pa1/$everything")
    assert reply.status == 404 or (reply.status == 200 and not entries(reply)), reply.text[:300]


def test_everything_of_ones_own_record_holds_only_ones_own(world):
    reply = get(world, "pa1", "Patient/pa1/$everything", [("_count", "1000")])
    assert reply.status == 200
    returned = keys(reply)
    readable = world.readable("pa1")
    assert set(returned) <= readable
    assert {"Patient/pa1", "Observation/obs-pa1-hr", "Observation/obs-pa1-bw", "Condition/cond-pa1"} <= set(
        returned
    )
    for entry in entries(reply):
        assert entry["resource"] == world.read_body("pa1", key_of(entry["resource"]))


@pytest.mark.parametrize("hidden", ["pa1", "pa2"])
def test_everything_on_an_unreadable_patient_reveals_nothing(world, hidden):
    # pa1's heart rate was performed by dr-b; pa2's generalPractitioner is dr-b.
    missing = world.callers["dr-b"].get("Patient/no-such-id/$everything")
    reply = world.callers["dr-b"].get(f"Patient/{hidden}/$everything")
    assert reply.status == missing.status
    assert keys(reply) == keys(missing) == []


def test_conditional_create_of_a_patient_does_not_reveal_the_match(world):
    mrn = f"{MRN_SYSTEM}|{PATIENT['pb1'].mrn}"
    body = {"resourceType": "Patient", "name": [{"family": "Probe"}]}
    reply = world.callers["pa1"].send("post", "Patient", body, {"If-None-Exist": f"identifier={mrn}"})
    assert_outcome(reply, {403}, "pa1 conditional create of a Patient")
    assert not leaked(world, "pa1", reply.text, mrn) and "pb1" not in reply.text


@pytest.mark.parametrize(
    "criteria", ["_id=obs-pb1-hr", f"code={HEART_RATE}&value-quantity=130", "patient=pb1&code=" + HEART_RATE]
)
def test_conditional_create_of_an_observation_does_not_return_anothers(world, criteria):
    # Each criteria string matches pb1's heart rate only.
    assert found(world, ADMIN, "Observation", parse_qsl(criteria)) == obs("obs-pb1-hr")
    reply = world.callers["pa1"].send("post", "Observation", observation("pa1"), {"If-None-Exist": criteria})
    assert reply.status in (201, 403), reply.text[:300]
    assert "pb1" not in reply.text.replace(criteria, "") and not leaked(world, "pa1", reply.text, criteria)
    if reply.status == 201:
        assert reply.json["subject"] == {"reference": "Patient/pa1"} and reply.json["id"] != "obs-pb1-hr"
    # And for pb1 itself, the subject refuses it whatever the criteria found.
    reply = world.callers["pa1"].send("post", "Observation", observation("pb1"), {"If-None-Exist": criteria})
    assert reply.status == 403 and "pb1" not in reply.text.replace(criteria, "").replace("Patient/pb1", "")


@pytest.mark.parametrize("criteria", ["_id=obs-pb1-hr", f"patient=pb1&code={HEART_RATE}"])
def test_conditional_update_does_not_reach_anothers_resource(world, criteria):
    # Matching runs over what pa1 may search: nothing matches, so this creates pa1's own, or refuses.
    reply = world.callers["pa1"].send("put", f"Observation?{criteria}", observation("pa1"))
    assert reply.status in (201, 403), reply.text[:300]
    assert not leaked(world, "pa1", reply.text, criteria)
    assert world.callers[ADMIN].get("Observation/obs-pb1-hr").json == world.read_body(
        ADMIN, "Observation/obs-pb1-hr"
    )


def test_batch_entries_are_narrowed_like_single_requests(world):
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "GET", "url": "Observation/obs-pb1-hr"}},
            {"request": {"method": "GET", "url": "Observation?patient=pb1"}},
            {"request": {"method": "GET", "url": "Observation/obs-pa1-hr"}},
        ],
    }
    reply = world.callers["pa1"].send("post", "", batch)
    assert reply.status == 200 and not leaked(world, "pa1", reply.text, "")
    read, search, own = reply.json["entry"]
    assert read["response"]["status"].startswith("404")
    assert search["response"]["status"].startswith("200") and "entry" not in search["resource"]
    assert own["resource"] == world.read_body("pa1", "Observation/obs-pa1-hr")


def test_post_search_is_narrowed_like_get(world):
    caller = world.callers["pa1"]
    response = caller.client.post(
        "/fhir/Observation/_search",
        "patient=pb1",
        content_type="application/x-www-form-urlencoded",
        headers=caller.headers,
    )
    assert response.status_code == 200
    assert "entry" not in response.json() and response.json()["total"] == 0


def test_explain_mode_is_the_admins_only(world):
    # X-Explain answers which rules matched and why, even as another role: for anyone but the admin
    # it must be an ordinary request.
    caller = world.callers["pa1"]
    asking = {**caller.headers, "X-Explain": "true", "X-Explain-Role": "Admin"}
    explained = caller.client.get("/fhir/Observation/obs-pb1-hr", headers=asking)
    plain = caller.get("Observation/obs-pb1-hr")
    assert (explained.status_code, explained.content.decode()) == (plain.status, plain.text)


# --- removed references and body checks (the statistician and the nurse) ------------------------------


def test_a_removed_reference_cannot_be_searched(world):
    # The baseline: the statistician's rule removes Observation.subject, and `subject=` is refused.
    for params in ([("subject", "Patient/pa1")], [("patient", "pa1")], [("subject:Patient.name", "Quenby")]):
        assert_outcome(get(world, "statistician", "Observation", params), {403}, f"statistician {params}")
    assert_outcome(
        get(world, "statistician", "Patient", [("_has:Observation:patient:code", HEART_RATE)]),
        {403},
        "statistician _has through Observation.patient",
    )


@pytest.mark.parametrize("member", ["Observation", "Condition"])
def test_compartment_search_through_a_removed_reference_is_refused(world, member):
    # Reported: `Patient/x/Observation` still connected Observations to the patient.
    assert found(world, ADMIN, f"Patient/pa1/{member}")
    assert_outcome(get(world, "statistician", f"Patient/pa1/{member}"), {403}, f"Patient/pa1/{member}")
    assert_outcome(
        get(world, "statistician", "Patient/pa1/*", [("_type", member)]),
        {403},
        f"Patient/pa1/*?_type={member}",
    )
    # A member type whose link is not hidden is searched as usual.
    assert found(world, "statistician", "Patient/pa1/Encounter") == ["Encounter/enc-pa1"]


def test_compartment_wildcard_skips_what_only_a_removed_reference_places_there(world):
    everything_of_pa1 = found(world, ADMIN, "Patient/pa1/*")
    assert "Observation/obs-pa1-hr" in everything_of_pa1 and "Condition/cond-pa1" in everything_of_pa1
    got = found(world, "statistician", "Patient/pa1/*")
    assert not [k for k in got if k.startswith(("Observation/", "Condition/"))], got
    assert {"Patient/pa1", "Encounter/enc-pa1", "MedicationRequest/mr-pa1"} <= set(got)
    counted = get(world, "statistician", "Patient/pa1/*", [("_summary", "count")]).json["total"]
    assert counted == len(got)


def test_everything_skips_what_only_a_removed_reference_places_there(world):
    # Reported: `Patient/x/$everything` still connected Observations and Conditions to the patient.
    admin = found(world, ADMIN, "Patient/pa1/$everything", [("_count", "1000")])
    assert {"Observation/obs-pa1-hr", "Condition/cond-pa1", "Practitioner/dr-b"} <= set(admin)
    got = found(world, "statistician", "Patient/pa1/$everything", [("_count", "1000")])
    assert not [k for k in got if k.startswith(("Observation/", "Condition/"))], got
    # dr-b performed pa1's heart rate and is not otherwise in pa1's record: it would tell of it.
    assert "Practitioner/dr-b" not in got
    assert {"Patient/pa1", "Encounter/enc-pa1", "Organization/org-a", "Practitioner/dr-a"} <= set(got)
    every = found(world, "statistician", "Patient/$everything", [("_count", "1000")])
    assert not [k for k in every if k.startswith(("Observation/", "Condition/"))]


def test_wildcard_revinclude_skips_removed_references(world):
    # Reported: `Patient?_id=x&_revinclude=*` still connected Observations and Conditions to the patient.
    query = [("_id", "pa1"), ("_revinclude", "*")]
    admin = found(world, ADMIN, "Patient", query)
    assert {"Observation/obs-pa1-hr", "Condition/cond-pa1", "Encounter/enc-pa1"} <= set(admin)
    got = found(world, "statistician", "Patient", query)
    assert not [k for k in got if k.startswith(("Observation/", "Condition/"))], got
    assert {"Patient/pa1", "Encounter/enc-pa1", "MedicationRequest/mr-pa1", "RelatedPerson/rp-pa1"} <= set(
        got
    )


def test_iterated_wildcard_include_skips_removed_references(world):
    # Reported: `_include:iterate=*` followed Observation.subject from an included Observation.
    query = [("_id", "dr-b"), ("_revinclude", "Observation:performer"), ("_include:iterate", "*")]
    assert "Patient/pa1" in found(world, ADMIN, "Practitioner", query)
    got = found(world, "statistician", "Practitioner", query)
    assert "Observation/obs-pa1-hr" in got and "Patient/pa1" not in got, got
    # And a wildcard include on the Observations themselves.
    got = found(world, "statistician", "Observation", [("_id", "obs-pa1-hr"), ("_include", "*")])
    assert got == ["Observation/obs-pa1-hr", "Practitioner/dr-b"]


@pytest.mark.parametrize(
    "name, value",
    [
        ("_include", "Observation:subject"),
        ("_include", "Observation:patient"),
        ("_revinclude", "Observation:subject"),
        ("_revinclude", "Condition:patient"),
    ],
)
def test_an_include_naming_a_removed_reference_is_refused(world, name, value):
    path = "Patient" if name == "_revinclude" else "Observation"
    assert_outcome(get(world, "statistician", path, [(name, value)]), {403}, f"statistician {name}={value}")


@pytest.mark.parametrize(
    "path, params",
    [
        # Reported: counted an Observation the nurse's FhirPath rule hides on read (pb1's 130/min).
        ("Patient", [("_has:Observation:subject:value-quantity", "gt100"), ("_summary", "count")]),
        ("Patient", [("_has:Observation:subject:value-string", "X"), ("_summary", "count")]),
        ("Patient", [("_has:Observation:patient:value-quantity", "lt100")]),
        ("Practitioner", [("_has:Observation:performer:value-quantity", "gt100")]),
        ("Observation", [("derived-from:Observation.value-quantity", "gt100")]),
        ("Observation", [("has-member.code", HEART_RATE)]),
    ],
)
def test_a_subquery_over_body_checked_resources_is_refused(world, path, params):
    assert get(world, ADMIN, path, params).status == 200
    assert_outcome(get(world, "nurse", path, params), {403}, f"nurse {path} {params}")


def test_body_checked_resources_are_filtered_on_every_other_route(world):
    # The nurse reads Observations below 100 only; a search over them drops the others in Python,
    # and nothing they refer to is included because of them.
    assert world.callers["nurse"].get("Observation/obs-pb1-hr").status == 404
    assert found(world, "nurse", "Observation", [("value-quantity", "gt100")]) == []
    got = found(world, "nurse", "Observation", [("code", HEART_RATE), ("_include", "Observation:subject")])
    assert "Patient/pb1" not in got and "Observation/obs-pb1-hr" not in got
    assert found(world, "nurse", "Patient/pb1/Observation") == []
    got = found(
        world, "nurse", "Patient", [("_id", "pb1"), ("_revinclude", "Observation:subject"),
                                    ("_include:iterate", "Observation:performer")],
    )  # fmt: skip
    assert got == ["Patient/pb1"]
