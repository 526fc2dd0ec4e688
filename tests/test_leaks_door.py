"""The leak suite's world, asked through the interaction layer directly (no HTTP): what every
transport built on the door inherits. For every persona, every type of the world and every
interaction that lists resources (search, history at type level, `$everything` of each patient),
each resource the door hands back is one the persona's single read returns, with the same body,
and a search lists every one of them (tests/test_leaks.py holds the HTTP oracle)."""

from __future__ import annotations

import json

import pytest

from authz.context import AccessContext
from interactions import read as door_read
from interactions import search as door_search
from resources.outcomes import FhirError
from tests.personas import PATIENTS, PERSONAS
from tests.test_leaks import world  # noqa: F401  (the module's world fixture)

pytestmark = pytest.mark.django_db

TYPES = ("Patient", "Observation", "Condition", "Encounter", "Organization", "Practitioner")
LISTED = [p for p in PERSONAS if p.role != "Public"]


def _ctx(persona) -> AccessContext:
    return AccessContext(role=persona.role, identity=persona.identity or None)


def _key(stored) -> str:
    return f"{stored.resource_type}/{stored.fhir_id}"


def _check(world, persona, found, what: str) -> set[str]:  # noqa: F811
    readable = world.readable(persona.name)
    keys = set()
    for stored in found:
        key = _key(stored)
        assert key in readable, (persona.name, what, key)
        assert json.loads(stored.body) == world.read_body(persona.name, key), (persona.name, what, key)
        keys.add(key)
    return keys


@pytest.mark.parametrize("persona", LISTED, ids=lambda p: p.name)
def test_door_search_and_history_return_exactly_what_reads_allow(world, persona):  # noqa: F811
    for resource_type in TYPES:
        try:
            page = door_search.search(
                _ctx(persona), resource_type=resource_type, params=[], count=1000, total="accurate"
            )
        except FhirError as refusal:
            assert refusal.status == 403, (persona.name, resource_type, refusal.status)
            continue
        keys = _check(world, persona, page.matches, f"search {resource_type}")
        readable = {k for k in world.readable(persona.name) if k.startswith(resource_type + "/")}
        if persona.role not in ("Nurse",):  # a body-checking rule cannot list (docs/rules.md)
            assert keys == readable, (persona.name, resource_type, readable - keys, keys - readable)
        if persona.role == "Patient" and resource_type == "Observation":
            assert keys, persona.name  # a patient's own Observations are there: the check bites
        try:
            history = door_read.history(_ctx(persona), resource_type=resource_type, count=1000)
        except FhirError as refusal:
            assert refusal.status == 403, (persona.name, resource_type, refusal.status)
            continue
        _check(world, persona, [e.stored for e in history.entries], f"history {resource_type}")


@pytest.mark.parametrize("persona", LISTED, ids=lambda p: p.name)
def test_door_everything_returns_only_what_reads_allow(world, persona):  # noqa: F811
    for patient in PATIENTS:
        try:
            page = door_search.everything(
                _ctx(persona),
                fhir_id=patient.id,
                since=None,
                types=None,
                count=1000,
                cursor=None,
                total=None,
                used=[],
                ignored=[],
            )
        except FhirError as refusal:
            assert refusal.status in (403, 404), (persona.name, patient.id, refusal.status)
            continue
        _check(world, persona, [*page.matches, *page.included], f"$everything {patient.id}")
