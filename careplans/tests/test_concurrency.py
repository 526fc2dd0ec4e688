"""Two materialisations of the same plans at once (two workers, or a worker and the command) make
each occurrence once: the Task id is derived from the occurrence, and the database refuses a second
row with it; the run that loses writes what is still missing."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from django.db import connection

from authz.context import AccessContext
from careplans import materialize as planner
from careplans.models import Schedule
from interactions import careplans as door
from resources.models import Resource
from resources.services import checked_body, insert_many

from .test_materialize import careplan

SYSTEM = AccessContext.system("careplan tests")
ROOT = Path(__file__).resolve().parents[2]


def _twelve_plans() -> None:
    insert_many([("Patient", "p1", checked_body("Patient", {"resourceType": "Patient"}), "POST")])
    # Enough plans that a run writes its Tasks in one large batch (COPY on PostgreSQL).
    body = checked_body("CarePlan", careplan(times=("08:00:00", "20:00:00")))
    insert_many([("CarePlan", f"plan-{n}", body, "POST") for n in range(12)])


def _each_occurrence_once() -> None:
    tasks = Resource.objects.system("careplan tests").filter(resource_type="Task")
    ids = list(tasks.values_list("fhir_id", flat=True))
    assert len(ids) == len(set(ids))
    assert 12 * 26 <= len(ids) <= 12 * 30  # twice a day for 14 days, each once


@pytest.mark.django_db(transaction=True)
def test_concurrent_runs_never_duplicate_an_occurrence():
    _twelve_plans()
    from django.utils import timezone

    planner.adopt(now=timezone.now())
    pks = list(Schedule.objects.values_list("pk", flat=True))
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def run() -> None:
        try:
            start.wait()
            door.extend(door.scheduler(path="test"), schedule_pks=pks)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    _each_occurrence_once()


@pytest.mark.django_db(transaction=True)
def test_two_processes_materialising_at_once_make_each_occurrence_once():
    """Two `materialize_careplans` processes on the same database at the same moment."""
    _twelve_plans()
    settings = connection.settings_dict
    if connection.vendor == "postgresql":
        url = f"postgres://{settings['USER']}@{settings['HOST']}:{settings['PORT']}/{settings['NAME']}"
    else:
        url = f"sqlite:///{settings['NAME']}"
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "FHIR_WORKER": "manual",
        "DJANGO_SETTINGS_MODULE": "fhirplatform.settings.test",
    }
    runs = [
        subprocess.Popen([sys.executable, "manage.py", "materialize_careplans"], cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]  # fmt: skip
    outputs = [run.communicate(timeout=300) for run in runs]
    assert all(run.returncode == 0 for run in runs), outputs
    _each_occurrence_once()
