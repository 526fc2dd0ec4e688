"""Index rows in the database: written with the resource, replaced on update, cleared on delete,
bulk-written across resources, on SQLite and PostgreSQL alike."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.utils import timezone

from resources.indexing import clear_index, index_resources
from resources.models import (
    CompartmentMembership,
    CompositeIndex,
    DateIndex,
    QuantityIndex,
    ReferenceIndex,
    Resource,
    StringIndex,
    TokenIndex,
    UriIndex,
)
from resources.tests.factories import ObservationFactory, PatientFactory

pytestmark = pytest.mark.django_db

ALL = (TokenIndex, StringIndex, DateIndex, QuantityIndex, ReferenceIndex, UriIndex, CompositeIndex)


def _resource(fhir, resource_type: str, fhir_id: str) -> Resource:
    return Resource.objects.system("test").get(resource_type=resource_type, fhir_id=fhir_id)


def test_create_writes_rows_of_every_type(fhir):
    patient = fhir.create({**PatientFactory(), "name": [{"family": "Ærø", "given": ["Jörg"]}]})
    observation = fhir.create(
        {
            **ObservationFactory(),
            "subject": {"reference": f"Patient/{patient['id']}"},
            "meta": {"profile": ["http://example.org/StructureDefinition/obs"]},
            "component": [
                {
                    "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                    "valueQuantity": {"value": Decimal("120.5"), "unit": "mmHg"},
                }
            ],
        }
    )
    row = _resource(fhir, "Observation", observation["id"])

    assert set(
        TokenIndex.objects.system("test")
        .filter(resource=row, param="code")
        .values_list("system", "code", "text")
    ) == {("http://loinc.org", "8867-4", "heart rate")}
    assert set(
        ReferenceIndex.objects.system("test")
        .filter(resource=row, param="patient")
        .values_list("target_type", "target_id")
    ) == {("Patient", patient["id"])}
    date = DateIndex.objects.system("test").get(resource=row, param="date")
    assert (date.low, date.high) == (
        datetime(2024, 5, 1, 10, tzinfo=UTC),
        datetime(2024, 5, 1, 10, 0, 0, 999999, tzinfo=UTC),
    )
    quantity = QuantityIndex.objects.system("test").get(resource=row, param="value-quantity")
    assert (quantity.value, quantity.code) == (Decimal(72), "/min")
    composite = CompositeIndex.objects.system("test").get(resource=row, param="component-code-value-quantity")
    assert (composite.c1_code, composite.c2_number, composite.c2_code) == ("8480-6", Decimal("120.5"), "mmHg")
    assert UriIndex.objects.system("test").filter(resource=row, param="_profile").exists()
    assert set(
        CompartmentMembership.objects.system("test")
        .filter(resource=row)
        .values_list("compartment_type", "compartment_id")
    ) == {("Patient", patient["id"])}

    prow = _resource(fhir, "Patient", patient["id"])
    assert set(
        StringIndex.objects.system("test").filter(resource=prow, param="name").values_list("value", "exact")
    ) == {
        ("ærø", "Ærø"),  # æ and ø are letters, not accented ones: casefolded only
        ("jorg", "Jörg"),
    }
    assert set(
        CompartmentMembership.objects.system("test")
        .filter(resource=prow)
        .values_list("compartment_type", "compartment_id")
    ) == {("Patient", patient["id"])}
    assert all(
        r.resource_type == "Observation" for r in TokenIndex.objects.system("test").filter(resource=row)
    )


def test_update_replaces_rows(fhir):
    created = fhir.create(ObservationFactory())
    url = f"Observation/{created['id']}"
    changed = {
        **created,
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "subject": {"reference": "Group/g1"},
    }
    del changed["valueQuantity"]
    assert fhir.put(url, changed).status_code == 200
    row = _resource(fhir, "Observation", created["id"])
    assert list(
        TokenIndex.objects.system("test").filter(resource=row, param="code").values_list("code", flat=True)
    ) == ["29463-7"]
    assert not QuantityIndex.objects.system("test").filter(resource=row).exists()
    assert not ReferenceIndex.objects.system("test").filter(resource=row, param="patient").exists()
    assert list(
        ReferenceIndex.objects.system("test")
        .filter(resource=row, param="subject")
        .values_list("target_id", flat=True)
    ) == ["g1"]
    assert not CompartmentMembership.objects.system("test").filter(resource=row).exists()


def test_patch_reindexes(fhir):
    created = fhir.create(PatientFactory())
    patch = [{"op": "replace", "path": "/gender", "value": "male"}]
    assert fhir.patch(f"Patient/{created['id']}", patch).status_code == 200
    row = _resource(fhir, "Patient", created["id"])
    assert list(
        TokenIndex.objects.system("test").filter(resource=row, param="gender").values_list("code", flat=True)
    ) == ["male"]


def test_delete_clears_every_table(fhir):
    patient = fhir.create(PatientFactory())
    observation = fhir.create({**ObservationFactory(), "subject": {"reference": f"Patient/{patient['id']}"}})
    fhir.delete(f"Observation/{observation['id']}")
    row = _resource(fhir, "Observation", observation["id"])
    for model in (*ALL, CompartmentMembership):
        assert not model.objects.system("test").filter(resource=row).exists(), model.__name__
    # the patient keeps its own rows
    assert (
        CompartmentMembership.objects.system("test")
        .filter(compartment_id=patient["id"], resource_type="Patient")
        .exists()
    )


def _rows(*bodies) -> list[tuple[Resource, dict]]:
    now = timezone.now()
    items = []
    for body in bodies:
        row = Resource.objects.system("test").create(
            resource_type=body["resourceType"], fhir_id=body["id"], version=1, last_updated=now, body="{}"
        )
        items.append((row, body))
    return items


def test_index_resources_bulk_and_clear():
    items = _rows(
        *(
            {**ObservationFactory(), "id": f"o{i}", "subject": {"reference": f"Patient/p{i % 3}"}}
            for i in range(1200)  # more rows than one statement takes on SQLite
        )
    )
    index_resources(items, fresh=True)
    assert ReferenceIndex.objects.system("test").filter(param="subject").count() == 1200
    assert CompartmentMembership.objects.system("test").filter(compartment_id="p1").count() == 400
    index_resources(items[:10], fresh=False)  # rewriting does not duplicate
    assert ReferenceIndex.objects.system("test").filter(param="subject").count() == 1200
    clear_index([row for row, _ in items[:600]])
    assert ReferenceIndex.objects.system("test").filter(param="subject").count() == 600
    clear_index([row for row, _ in items[600:]], every_table=True)
    for model in (*ALL, CompartmentMembership):
        assert not model.objects.system("test").exists()


def test_duplicate_values_give_one_row():
    items = _rows(
        {
            "resourceType": "Observation",
            "id": "dup",
            "status": "final",
            "code": {"text": "x"},
            "category": [
                {"coding": [{"system": "s", "code": "c"}]},
                {"coding": [{"system": "s", "code": "c"}]},
            ],
        }
    )
    index_resources(items, fresh=True)
    assert TokenIndex.objects.system("test").filter(param="category").count() == 1
