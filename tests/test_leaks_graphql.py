"""The leak world (tests/personas.py) asked through FHIR GraphQL: a second transport over the same
door, with the same decisions and the same property filters as REST.

The rules are the leak suite's, with `graphql-read` granted beside every `read` and `graphql-search`
beside every `search` (a role's GraphQL surface is otherwise its own: the last test shows a role with
`read` alone is refused in GraphQL). For every persona:

- `T(id:)` of every resource of the world equals that persona's REST read: the same body (every
  element the admin's copy has is selected, so a redaction shows as a missing element), and for a
  resource it may not read, null with an error carrying the read's status and message;
- `TList` of every type equals the REST search of the type: the same ids in the same order, each
  with the body of its read; a search REST refuses is refused alike (status), and a parameter a rule
  blocks (the researcher's `address`) is refused as an argument;
- a reference resolves exactly when the persona may read its target; otherwise it is null with an
  error entry that reads as a missing resource's does; nothing unreadable (no marker, no researcher
  secret) appears anywhere in any GraphQL answer.
"""

from __future__ import annotations

import json

import pytest
from django.test import Client

from authz import rules, ruleset
from resources.services import resource_update
from tests.personas import PERSONAS, RULES_YAML, SYSTEM
from tests.test_leaks import entries, key_of, leaked, world  # noqa: F401  (the module's world fixture)

pytestmark = pytest.mark.django_db

TYPES = (
    "Patient",
    "Observation",
    "Condition",
    "Encounter",
    "Organization",
    "Practitioner",
    "PractitionerRole",
)
LISTED = [p for p in PERSONAS if p.role != "Public"]
# Reference fields of the world's resources, to follow with `resource`.
REFERENCES = {
    "Patient": ("managingOrganization", "generalPractitioner", "link { other"),
    "Observation": ("subject", "performer"),
    "Condition": ("subject",),
    "Encounter": ("subject", "serviceProvider"),
    "PractitionerRole": ("practitioner", "organization"),
    "Organization": ("partOf",),
}


def graphql_rules(text: str) -> list[dict]:
    """The leak rules with the GraphQL operations granted wherever REST's are."""
    parsed = ruleset.parse_yaml(text)
    for rule in parsed:
        operations = rule["operation"] if isinstance(rule["operation"], list) else [rule["operation"]]
        if "*" in operations:
            continue
        extra = [f"graphql-{op}" for op in ("read", "search") if op in operations]
        rule["operation"] = [*operations, *extra]
    return parsed


@pytest.fixture
def granted(world):  # noqa: F811
    ruleset.replace_rules(graphql_rules(RULES_YAML))
    rules.forget_rules()
    yield world
    rules.forget_rules()  # the test's savepoint rolls the rules back; the cache must follow


def ask(world, persona: str, query: str) -> dict:  # noqa: F811
    caller = world.callers[persona]
    response = Client().post(
        "/fhir/$graphql",
        json.dumps({"query": query}),
        content_type="application/json",
        headers=caller.headers,
    )
    assert response.status_code in (200, 400, 401), response.content
    text = response.content.decode()
    assert not leaked(world, persona, text, query), (persona, leaked(world, persona, text, query))
    return json.loads(text)


# --- a selection of everything a body holds --------------------------------------------------------


def _shape(value, into: dict | None = None) -> dict | None:
    """The JSON keys at every level of `value` (lists merged), or None for a leaf."""
    items = value if isinstance(value, list) else [value]
    dicts = [item for item in items if isinstance(item, dict)]
    if not dicts:
        return into
    shape = into if into is not None else {}
    for item in dicts:
        for key, child in item.items():
            shape[key] = _shape(child, shape.get(key))
    return shape


def _selection(shape: dict) -> str:
    return (
        "{ "
        + " ".join(key if sub is None else f"{key} {_selection(sub)}" for key, sub in shape.items())
        + " }"
    )


def _no_nulls(value):
    if isinstance(value, dict):
        return {k: _no_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_no_nulls(v) for v in value]
    return value


def _alias(index: int) -> str:
    return f"r{index}"


# --- the oracles -----------------------------------------------------------------------------------


@pytest.mark.parametrize("persona", [p.name for p in PERSONAS], ids=str)
def test_by_id_equals_rest_read(granted, persona):
    keys = granted.world.keys
    fields = []
    for index, key in enumerate(keys):
        resource_type, fhir_id = key.split("/")
        # Every element of the admin's copy, and those the persona's own copy adds (a redaction mark).
        shape = _shape(granted.read_body("admin", key))
        if granted.reads[persona][key].status == 200:
            _shape(granted.read_body(persona, key), shape)
        fields.append(f'{_alias(index)}: {resource_type}(id: "{fhir_id}") {_selection(shape)}')
    body = ask(granted, persona, "{ " + "\n".join(fields) + " }")
    if persona == "public":
        assert body["errors"][0]["extensions"]["status"] == 401
        return
    errors = {tuple(e["path"]): e for e in body.get("errors", [])}
    for index, key in enumerate(keys):
        rest = granted.reads[persona][key]
        got = body["data"][_alias(index)]
        if rest.status == 200:
            assert got is not None, (persona, key, errors.get((_alias(index),)))
            assert _no_nulls(got) == rest.json, (persona, key)
        else:
            assert got is None, (persona, key)
            error = errors[(_alias(index),)]
            assert error["extensions"]["status"] == rest.status, (persona, key)
            if rest.status == 404:
                assert error["message"] == rest.json["issue"][0]["diagnostics"], (persona, key)


@pytest.mark.parametrize("persona", [p.name for p in LISTED], ids=str)
def test_lists_equal_rest_searches(granted, persona):
    caller = granted.callers[persona]
    searches = [(t, [], "") for t in TYPES] + [
        ("Observation", [("code", "8867-4")], 'code: "8867-4"'),
        ("Observation", [("value-quantity", "gt100")], 'value_quantity: "gt100"'),
        ("Patient", [("gender", "female"), ("_sort", "birthdate")], 'gender: "female", _sort: "birthdate"'),
        ("Patient", [("address-city", "Zennor")], 'address_city: "Zennor"'),
        ("Patient", [("birthdate", "ge1960"), ("birthdate", "lt1980")], 'birthdate: ["ge1960", "lt1980"]'),
        ("Condition", [("subject", "Patient/pa1")], 'subject: "Patient/pa1"'),
        ("Encounter", [("subject:Patient.family", "Thistlewood")], None),  # a chain: no GraphQL form
    ]
    for index, (resource_type, params, arguments) in enumerate(searches):
        if arguments is None:
            continue
        rest = caller.get(resource_type, [*params, ("_count", "1000")])
        field = (
            f"{resource_type}List({arguments}, _count: 1000)"
            if arguments
            else f"{resource_type}List(_count: 1000)"
        )
        body = ask(granted, persona, f"{{ {field} {{ resourceType id }} }}")
        if rest.status != 200:
            assert body["data"] is None or body["data"][f"{resource_type}List"] is None, (persona, field)
            assert body["errors"][0]["extensions"]["status"] == rest.status, (persona, field, body["errors"])
            continue
        assert "errors" not in body, (persona, field, body.get("errors"))
        listed = [key_of(r) for r in body["data"][f"{resource_type}List"]]
        assert listed == [key_of(e["resource"]) for e in entries(rest, "match")], (persona, field)
        if index == 0 and persona == "researcher":
            assert listed  # the check bites
    # The bodies of a list are the bodies of the reads.
    for resource_type in TYPES:
        readable = [k for k in granted.readable(persona) if k.startswith(resource_type + "/")]
        if not readable:
            continue
        shape: dict = {}
        for key in readable:
            _shape(granted.read_body("admin", key), shape)
            _shape(granted.read_body(persona, key), shape)
        body = ask(granted, persona, f"{{ {resource_type}List(_count: 1000) {_selection(shape)} }}")
        if body.get("data") is None:
            continue  # refused as a search (REST refuses it too: checked above)
        for resource in body["data"][f"{resource_type}List"]:
            assert _no_nulls(resource) == granted.read_body(persona, key_of(resource)), (
                persona,
                key_of(resource),
            )


@pytest.mark.parametrize("persona", [p.name for p in LISTED], ids=str)
def test_references_resolve_exactly_to_what_the_persona_may_read(granted, persona):
    readable = granted.readable(persona)
    fields = []
    asked = []
    for key in sorted(readable):
        resource_type, fhir_id = key.split("/")
        if resource_type not in REFERENCES:
            continue
        parts = []
        for path in REFERENCES[resource_type]:
            closing = "}" * path.count("{")
            parts.append(f"{path} {{ reference resource {{ resourceType id }} }} {closing}")
        alias = _alias(len(asked))
        asked.append(key)
        fields.append(f'{alias}: {resource_type}(id: "{fhir_id}") {{ {" ".join(parts)} }}')
    if not fields:
        return
    body = ask(granted, persona, "{ " + "\n".join(fields) + " }")
    errors = {tuple(e["path"]): e for e in body.get("errors", [])}
    followed = 0

    def walk(value, path):
        nonlocal followed
        if isinstance(value, list):
            for i, item in enumerate(value):
                walk(item, [*path, i])
        elif isinstance(value, dict):
            if "reference" in value and "resource" in value:
                target = value["reference"]
                if target in readable:
                    assert value["resource"] == dict(
                        zip(("resourceType", "id"), target.split("/"), strict=True)
                    ), (
                        persona,
                        path,
                    )
                    followed += 1
                else:
                    assert value["resource"] is None, (persona, path, target)
                    error = errors[(*path, "resource")]
                    assert error["message"] == f"{target} is not known", (persona, path, error)
                return
            for name, child in value.items():
                walk(child, [*path, name])

    for index in range(len(asked)):
        walk(body["data"][_alias(index)], [_alias(index)])
    if persona.startswith("pa") or persona == "admin":
        assert followed  # a patient follows its own Observation's subject: the check bites


def test_unreadable_and_missing_references_read_the_same(granted):
    # pa1 reads its Observation, performed by dr-b (not in its compartment), and one that names a
    # practitioner that does not exist.
    resource_update(
        SYSTEM,
        resource_type="Observation",
        fhir_id="obs-pa1-ghost",
        body={
            "resourceType": "Observation",
            "id": "obs-pa1-ghost",
            "status": "final",
            "code": {"text": "ghost"},
            "subject": {"reference": "Patient/pa1"},
            "performer": [{"reference": "Practitioner/ghost"}],
        },
    )
    body = ask(
        granted,
        "pa1",
        """{ real: Observation(id: "obs-pa1-hr") { performer { resource { id } } }
             ghost: Observation(id: "obs-pa1-ghost") { performer { resource { id } } } }""",
    )
    assert body["data"] == {
        "real": {"performer": [{"resource": None}]},
        "ghost": {"performer": [{"resource": None}]},
    }
    real, ghost = sorted(body["errors"], key=lambda e: e["path"][0], reverse=True)
    assert real["message"] == "Practitioner/dr-b is not known"
    assert ghost["message"] == "Practitioner/ghost is not known"
    assert real["extensions"] == ghost["extensions"] == {"status": 404, "code": "not-found"}
    # `optional: true`: null without an error, for both alike.
    body = ask(
        granted,
        "pa1",
        """{ real: Observation(id: "obs-pa1-hr") { performer { resource(optional: true) { id } } }
             ghost: Observation(id: "obs-pa1-ghost") { performer { resource(optional: true) { id } } } }""",
    )
    assert "errors" not in body
    assert body["data"]["real"] == body["data"]["ghost"] == {"performer": [{"resource": None}]}


def test_blocked_parameters_are_refused_as_arguments(granted):
    # The researcher's rule blocks `address` and redacts name (so `name`, `family` are blocked too).
    for argument in ('address: "Zennor"', 'family: "Stilwell"', 'name: "Marigold"'):
        body = ask(granted, "researcher", f"{{ PatientList({argument}) {{ id }} }}")
        assert body["data"]["PatientList"] is None, argument
        assert body["errors"][0]["extensions"]["status"] == 403, (argument, body["errors"])


def test_rest_grants_do_not_open_graphql(world):  # noqa: F811
    """Under the leak suite's own rules (read and search only), a patient reads itself over REST but
    is refused in GraphQL: graphql-read and graphql-search are operations of their own."""
    body = ask(world, "pa1", '{ Patient(id: "pa1") { id } PatientList { id } }')
    assert body["data"] == {"Patient": None, "PatientList": None}
    assert sorted(e["extensions"]["status"] for e in body["errors"]) == [403, 403]
    assert world.reads["pa1"]["Patient/pa1"].status == 200


@pytest.mark.parametrize("persona", [p.name for p in LISTED], ids=str)
def test_reverse_references_equal_rest_searches(granted, persona):
    """`ObservationList(_reference: subject)` (and Condition, Encounter) on each patient the persona
    may read equals the REST search `Observation?subject=Patient/[id]`: same ids, same order; a search
    REST refuses (the statistician, whose rule removes `subject`) is refused alike."""
    caller = granted.callers[persona]
    patients = sorted(k for k in granted.readable(persona) if k.startswith("Patient/"))
    checked = 0
    for key in patients:
        fhir_id = key.split("/")[1]
        fields = " ".join(
            f"{t}List(_reference: subject, _count: 100) {{ resourceType id }}"
            for t in ("Observation", "Condition", "Encounter")
        )
        body = ask(granted, persona, f'{{ Patient(id: "{fhir_id}") {{ {fields} }} }}')
        errors = {e["path"][-1]: e for e in body.get("errors", [])}
        for resource_type in ("Observation", "Condition", "Encounter"):
            rest = caller.get(resource_type, [("subject", key), ("_count", "100")])
            got = body["data"]["Patient"][f"{resource_type}List"]
            if rest.status != 200:
                assert got is None, (persona, key, resource_type)
                assert errors[f"{resource_type}List"]["extensions"]["status"] == rest.status
                continue
            assert [key_of(r) for r in got] == [key_of(e["resource"]) for e in entries(rest, "match")], (
                persona,
                key,
                resource_type,
            )
            checked += len(got)
    if persona in ("admin", "pa1", "dr-a"):
        assert checked  # the check bites


@pytest.mark.parametrize("persona", [p for p in PERSONAS if p.role != "Public"], ids=lambda p: p.name)
def test_read_many_answers_each_resource_as_its_read(granted, persona):
    """The door's batch read (references of one level) gives, for every id, what the single
    graphql-read of that id gives: the same body, or the same refusal."""
    from authz.context import AccessContext
    from interactions import graphql as door
    from resources.outcomes import FhirError

    by_type: dict[str, list[str]] = {}
    for key in granted.world.keys:
        resource_type, fhir_id = key.split("/")
        by_type.setdefault(resource_type, []).append(fhir_id)
    for resource_type, ids in by_type.items():
        ids = [*ids, "missing-one"]
        batch = door.read_many(
            AccessContext(role=persona.role, identity=persona.identity or None),
            resource_type=resource_type,
            fhir_ids=ids,
        )
        for fhir_id in ids:
            try:
                one = door.read(
                    AccessContext(role=persona.role, identity=persona.identity or None),
                    resource_type=resource_type,
                    fhir_id=fhir_id,
                )
            except FhirError as refusal:
                assert isinstance(batch[fhir_id], FhirError), (persona.name, resource_type, fhir_id)
                assert (batch[fhir_id].status, batch[fhir_id].issues) == (refusal.status, refusal.issues)
                continue
            assert not isinstance(batch[fhir_id], FhirError), (persona.name, resource_type, fhir_id)
            assert batch[fhir_id].body == one.body, (persona.name, resource_type, fhir_id)
