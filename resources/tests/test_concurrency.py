"""Concurrent writers of one resource queue on its row: versions are strictly sequential, none is
lost, and with If-Match exactly one of two racing writers wins (http.html#concurrency)."""

import threading

import pytest
from django.db import connection

from authz.context import AccessContext
from resources import fhirjson
from resources.models import ResourceVersion
from resources.outcomes import FhirError
from resources.services import resource_create, resource_update

from .factories import PatientFactory

pytestmark = pytest.mark.django_db(transaction=True)

CTX = AccessContext.system("tests")


def _race(worker, count):
    barrier = threading.Barrier(count)
    results, errors = [], []

    def run(n):
        try:
            barrier.wait()
            results.append(worker(n))
        except Exception as exc:  # collected and asserted on by the caller
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, errors


def test_concurrent_updates_never_lose_a_version():
    created = resource_create(CTX, resource_type="Patient", body=PatientFactory()).stored
    body = fhirjson.loads(created.body)

    def update(n):
        return resource_update(
            CTX,
            resource_type="Patient",
            fhir_id=created.fhir_id,
            body={**body, "birthDate": f"19{n + 10}-01-01"},
        ).stored.version

    results, errors = _race(update, 8)
    assert errors == []
    assert sorted(results) == list(range(2, 10))
    versions = list(
        ResourceVersion.objects.system("test")
        .filter(fhir_id=created.fhir_id)
        .values_list("version", flat=True)
    )
    assert sorted(versions) == list(range(1, 10))


def test_if_match_race_has_exactly_one_winner():
    created = resource_create(CTX, resource_type="Patient", body=PatientFactory()).stored
    body = fhirjson.loads(created.body)

    def update(n):
        return resource_update(
            CTX,
            resource_type="Patient",
            fhir_id=created.fhir_id,
            body={**body, "gender": "male"},
            if_match='W/"1"',
        ).stored.version

    results, errors = _race(update, 4)
    assert results == [2]
    assert len(errors) == 3
    assert all(isinstance(e, FhirError) and e.status == 412 for e in errors)


def test_concurrent_update_as_create_of_one_id():
    def update(n):
        return resource_update(
            CTX, resource_type="Patient", fhir_id="raced", body=PatientFactory(id="raced")
        ).status

    results, errors = _race(update, 4)
    assert errors == []
    assert sorted(results) == [200, 200, 200, 201]
    assert ResourceVersion.objects.system("test").filter(fhir_id="raced").count() == 4


def test_concurrent_conditional_creates_create_once():
    def create(n):
        return resource_create(
            CTX,
            resource_type="Patient",
            body=PatientFactory(identifier=[{"system": "urn:race", "value": "1"}]),
            if_none_exist="identifier=urn:race|1",
        ).status

    results, errors = _race(create, 4)
    assert errors == []
    assert sorted(results) == [200, 200, 200, 201]
