"""No persona widens its own access by writing (property-based, hypothesis).

The world is the leak suite's (tests/personas.py) plus a patient nobody reaches (`pz`), under the
leak suite's rules and the write rules of resources/tests/test_write_guards.py, which give every
route into widening a way in: patients may update themselves and their relatives, practitioners may
update care teams they are on, any Organization, their own Practitioner record, and create anything
their organisations cover.

For each persona, hypothesis draws a sequence of writes: creates and updates of PractitionerRole,
CareTeam, Patient (links, managingOrganization, generalPractitioner), Organization (partOf),
RelatedPerson (patient), Practitioner (active), Observations with various subjects and performers,
and deletes of Observations. They run through the service layer (the functions every transport
calls) as that persona; refusals are expected. After every write, the set of resources the persona
may read, less the resources it wrote itself, must be a subset of what it could read before the
sequence began. Every example runs in a savepoint that is rolled back, so examples start from the
same world.

Derandomised, 20 examples per persona; WIDENING_EXPLORE=1 draws new ones, WIDENING_EXAMPLES=100
draws more.
"""

from __future__ import annotations

import os

import pytest
from django.db import transaction
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from authz import rules
from authz.context import AccessContext
from resources import fhirjson
from resources.models import Resource
from resources.outcomes import FhirError
from resources.services import resource_create, resource_delete, resource_update
from resources.tests.test_write_guards import add_stranger, load, write_rules
from tests.personas import PATIENTS, PRACTITIONERS, build_world

pytestmark = pytest.mark.django_db

# pz: reached by nobody; ghost and org-ghost: named by data (obs-ghost; pg and role-ghost) but absent.
PATIENT_IDS = [p.id for p in PATIENTS] + ["pz", "pg", "ghost"]
ORG_IDS = ["org-a", "org-a1", "org-b", "org-ghost"]
PRACTITIONER_IDS = list(PRACTITIONERS)
WRITERS = {
    "pa1": "Patient/pa1",
    "pa2": "Patient/pa2",
    "pb1": "Patient/pb1",
    "rp-pa1": "RelatedPerson/rp-pa1",
    **{dr: f"Practitioner/{dr}" for dr in PRACTITIONER_IDS},
}
EXAMPLES = int(os.environ.get("WIDENING_EXAMPLES", "20"))
EXPLORE = os.environ.get("WIDENING_EXPLORE") == "1"


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        atomic = transaction.atomic()
        atomic.__enter__()
        try:
            build_world()
            add_stranger()
            load(write_rules())
        except BaseException:
            transaction.set_rollback(True)
            atomic.__exit__(None, None, None)
            raise
    yield
    with django_db_blocker.unblock():
        transaction.set_rollback(True)
        atomic.__exit__(None, None, None)
        rules.forget_rules()


# --- what a persona may read -------------------------------------------------------------------------


def context(identity: str) -> AccessContext:
    """A fresh request's context for the persona (nothing memoised from an earlier request)."""
    return AccessContext(role=identity.split("/", 1)[0], identity=identity)


def readable(identity: str) -> set[tuple[str, str]]:
    rows = Resource.objects.restrict(context(identity), "read").filter(deleted=False)
    return set(rows.values_list("resource_type", "fhir_id"))


def stored(resource_type: str, fhir_id: str) -> dict:
    row = Resource.objects.system("test: current body").get(resource_type=resource_type, fhir_id=fhir_id)
    body = fhirjson.loads(row.body)
    body.pop("meta", None)
    return body


# --- writes ------------------------------------------------------------------------------------------


def ref(reference: str) -> dict:
    return {"reference": reference}


patients = st.sampled_from(PATIENT_IDS)
orgs = st.sampled_from(ORG_IDS)
practitioners = st.sampled_from(PRACTITIONER_IDS)
members = st.one_of(
    practitioners.map(lambda p: f"Practitioner/{p}"),
    orgs.map(lambda o: f"Organization/{o}"),
    st.sampled_from(["PractitionerRole/role-dr-a", "PractitionerRole/role-dr-b"]),
)


@st.composite
def practitioner_role(draw, me: str):
    who = draw(st.one_of(practitioners.map(lambda p: f"Practitioner/{p}"), st.just(me)))
    body = {
        "resourceType": "PractitionerRole",
        "practitioner": ref(who),
        "organization": ref(f"Organization/{draw(orgs)}"),
    }
    active = draw(st.sampled_from([None, True, False]))
    if active is not None:
        body["active"] = active
    return ("create", body)


@st.composite
def care_team(draw, me: str):
    body = {
        "resourceType": "CareTeam",
        "status": draw(st.sampled_from(["active", "proposed", "inactive"])),
        "subject": ref(f"Patient/{draw(patients)}"),
        "participant": [
            {"member": ref(m)}
            for m in draw(st.lists(st.one_of(members, st.just(me)), min_size=1, max_size=2))
        ],
    }
    if draw(st.booleans()):
        return ("update", {**body, "id": "ct-pb1"})
    return ("create", body)


@st.composite
def patient(draw, me: str):
    if draw(st.booleans()):
        fhir_id = draw(patients)
        body = (
            stored("Patient", fhir_id)
            if _exists("Patient", fhir_id)
            else {"resourceType": "Patient", "id": fhir_id}
        )
        operation = "update"
    else:
        body, operation = {"resourceType": "Patient"}, "create"
    links = draw(
        st.lists(
            st.one_of(patients.map(lambda p: f"Patient/{p}"), st.just(me)).filter(
                lambda r: r.startswith("Patient/")
            ),
            max_size=2,
        )
    )
    if links or draw(st.booleans()):
        body.pop("link", None)
        if links:
            body["link"] = [{"other": ref(r), "type": "seealso"} for r in links]
    org = draw(st.sampled_from([None, "keep", *ORG_IDS]))
    if org is None:
        body.pop("managingOrganization", None)
    elif org != "keep":
        body["managingOrganization"] = ref(f"Organization/{org}")
    gp = draw(
        st.sampled_from(
            [None, "keep", *(f"Practitioner/{p}" for p in PRACTITIONER_IDS), "Organization/org-b"]
        )
    )
    if gp is None:
        body.pop("generalPractitioner", None)
    elif gp != "keep":
        body["generalPractitioner"] = [ref(gp)]
    return (operation, body)


@st.composite
def organization(draw, me: str):
    parent = draw(st.sampled_from([None, *ORG_IDS]))
    if draw(st.booleans()):
        fhir_id = draw(orgs)
        body = (
            stored("Organization", fhir_id)
            if _exists("Organization", fhir_id)
            else {"resourceType": "Organization", "id": fhir_id}
        )
        operation = "update"
    else:
        body, operation = {"resourceType": "Organization", "name": "New organisation"}, "create"
    body.pop("partOf", None)
    if parent is not None:
        body["partOf"] = ref(f"Organization/{parent}")
    return (operation, body)


@st.composite
def related_person(draw, me: str):
    body = {"resourceType": "RelatedPerson", "patient": ref(f"Patient/{draw(patients)}")}
    if draw(st.booleans()):
        return ("update", {**stored("RelatedPerson", "rp-pa1"), **body})
    return ("create", body)


@st.composite
def practitioner(draw, me: str):
    fhir_id = draw(
        st.one_of(practitioners, st.just(me.split("/", 1)[1])).filter(lambda i: i in PRACTITIONERS)
    )
    return ("update", {**stored("Practitioner", fhir_id), "active": draw(st.booleans())})


@st.composite
def observation(draw, me: str):
    performers = draw(
        st.lists(
            st.one_of(
                st.just(me),
                patients.map(lambda p: f"Patient/{p}"),
                practitioners.map(lambda p: f"Practitioner/{p}"),
            ),
            max_size=2,
        )
    )
    body = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "drawn"},
        "subject": ref(f"Patient/{draw(patients)}"),
    }
    if performers:
        body["performer"] = [ref(p) for p in performers]
    return ("create", body)


@st.composite
def observation_delete(draw, me: str):
    return (
        "delete",
        {"resourceType": "Observation", "id": f"obs-{draw(patients)}-{draw(st.sampled_from(['hr', 'bw']))}"},
    )


def writes(me: str):
    return st.lists(
        st.one_of(
            practitioner_role(me),
            care_team(me),
            patient(me),
            organization(me),
            related_person(me),
            practitioner(me),
            observation(me),
            observation_delete(me),
        ),
        min_size=1,
        max_size=4,
    )


def _exists(resource_type: str, fhir_id: str) -> bool:
    return (
        Resource.objects.system("test: exists")
        .filter(resource_type=resource_type, fhir_id=fhir_id, deleted=False)
        .exists()
    )


def _call(ctx: AccessContext, operation: str, resource_type: str, body: dict):
    if operation == "create":
        return resource_create(ctx, resource_type=resource_type, body=body)
    if operation == "update":
        return resource_update(ctx, resource_type=resource_type, fhir_id=body["id"], body=body)
    return resource_delete(ctx, resource_type=resource_type, fhir_id=body["id"])


def run(identity: str, operation: str, body: dict) -> tuple[str, str] | None:
    """Write as the persona; the key written, or None when refused."""
    ctx = context(identity)
    resource_type = body["resourceType"]
    try:
        with transaction.atomic():  # one request: a refusal rolls back this write only
            result = _call(ctx, operation, resource_type, body)
    except FhirError as exc:
        assert exc.status in (400, 403, 404, 409, 410, 412, 422), exc
        note(f"  refused {exc.status}: {exc.issues[0].diagnostics}")
        event(f"{resource_type} {operation}: refused {exc.status}")
        return None
    if result is None:
        return None
    note(f"  {result.status}: {resource_type}/{result.stored.fhir_id}")
    event(f"{resource_type} {operation}: written")
    return (resource_type, result.stored.fhir_id)


@pytest.mark.parametrize("persona", sorted(WRITERS))
@settings(
    max_examples=EXAMPLES,
    derandomize=not EXPLORE,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(data=st.data())
def test_no_write_widens_its_writers_access(world, persona, data):
    me = WRITERS[persona]
    with transaction.atomic():
        before = readable(me)
        written: set[tuple[str, str]] = set()
        for operation, body in data.draw(writes(me), label="writes"):
            note(f"{persona} {operation} {fhirjson.dumps(body)}")
            key = run(me, operation, body)
            if key is not None:
                written.add(key)
            gained = readable(me) - written - before
            assert not gained, f"{persona} gained {sorted(gained)} by its own writes"
        transaction.set_rollback(True)
