"""CarePlan materialisation at scale (issue 12's figures), on a fresh PostgreSQL database:

    .venv/bin/python bench/careplans.py [--plans 10000] [--patients 1000]

1. writes `--plans` tagged active CarePlans (two daily activities, 08:00 and 20:00, in several
   zones) for `--patients` Patients, as the platform, in batches;
2. times `manage.py materialize_careplans` over them: 14 days x 2 a day = 28 Tasks per plan,
   validated, indexed, versioned, audited and written in batches: Tasks/s and total time;
3. times one hourly horizon extension when nothing changed (every plan's horizon one hour behind).

Prints one JSON line with the figures. Needs PostgreSQL at 127.0.0.1:5432 (or BENCH_PG).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ZONES = ("Europe/Berlin", "America/New_York", "Asia/Tokyo", "UTC")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plans", type=int, default=10_000)
    parser.add_argument("--patients", type=int, default=1_000)
    args = parser.parse_args()
    server = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")
    name = f"fhirbench_careplans_{uuid.uuid4().hex[:8]}"
    subprocess.run(["psql", f"{server}/postgres", "-qc", f"CREATE DATABASE {name}"], check=True)
    env = {
        **os.environ,
        "DATABASE_URL": f"{server}/{name}",
        "DJANGO_SETTINGS_MODULE": "fhirplatform.settings.local",
        "FHIR_WORKER": "manual",
    }
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
        step = subprocess.run(
            [sys.executable, __file__, "--load", str(args.plans), str(args.patients)],
            cwd=ROOT, env=env, check=True, capture_output=True, text=True,
        )  # fmt: skip
        loaded = json.loads(step.stdout.strip().splitlines()[-1])
        started = time.monotonic()
        run = subprocess.run(
            [sys.executable, "manage.py", "materialize_careplans"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        total = time.monotonic() - started
        step = subprocess.run(
            [sys.executable, __file__, "--extend"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        extended = json.loads(step.stdout.strip().splitlines()[-1])
        print(run.stdout.strip())
        tasks = loaded["plans"] * 28
        print(
            json.dumps(
                {
                    "plans": loaded["plans"],
                    "load_plans_s": loaded["seconds"],
                    "materialize_s": round(total, 1),
                    "materialize_command_output": run.stdout.strip(),
                    "tasks_expected": tasks,
                    "tasks_per_s_wall": round(tasks / total),
                    "hourly_extension_s": extended["seconds"],
                    "hourly_extension_tasks": extended["created"],
                }
            )
        )
    finally:
        subprocess.run(["psql", f"{server}/postgres", "-qc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"])


def _setup() -> None:
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def load(plans: int, patients: int) -> None:
    _setup()
    from django.db import transaction

    from resources.services import checked_body, insert_many

    started = time.monotonic()
    with transaction.atomic():
        insert_many(
            [
                ("Patient", f"pat-{n}", checked_body("Patient", {"resourceType": "Patient"}), "POST")
                for n in range(patients)
            ]
        )
    tag = {"system": "http://fhirplatform.org/CodeSystem/careplan-scheduling", "code": "materialize"}
    batch = []
    for n in range(plans):
        zone = ZONES[n % len(ZONES)]
        start = {
            "start": "2026-01-01",
            "_start": {
                "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/tz-code", "valueCode": zone}]
            },
        }
        body = {
            "resourceType": "CarePlan",
            "meta": {"tag": [tag]},
            "status": "active",
            "intent": "plan",
            "subject": {"reference": f"Patient/pat-{n % patients}"},
            "period": {"start": "2026-01-01"},
            "activity": [
                {"id": key, "detail": {"status": "scheduled", "description": text, "scheduledTiming": {
                    "repeat": {"boundsPeriod": start, "frequency": 1, "period": 1, "periodUnit": "d", "timeOfDay": [at]}}}}
                for key, text, at in (("bp", "Measure blood pressure", "08:00:00"), ("med", "Take medication", "20:00:00"))
            ],
        }  # fmt: skip
        batch.append(("CarePlan", f"plan-{n}", checked_body("CarePlan", body), "POST"))
        if len(batch) == 1000:
            with transaction.atomic():
                insert_many(batch)
            batch = []
    if batch:
        with transaction.atomic():
            insert_many(batch)
    print(json.dumps({"plans": plans, "seconds": round(time.monotonic() - started, 1)}))


def extend() -> None:
    _setup()
    from datetime import timedelta

    from django.db.models import F

    from careplans import jobs
    from careplans.models import Schedule

    Schedule.objects.update(until=F("until") - timedelta(hours=1))
    started = time.monotonic()
    created = jobs.extend_horizon()
    print(json.dumps({"seconds": round(time.monotonic() - started, 2), "created": created}))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--load":
        load(int(sys.argv[2]), int(sys.argv[3]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--extend":
        extend()
    else:
        main()
