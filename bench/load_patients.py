"""Bulk-load Patients for S4 (the patient-lookup journey) straight through `resources.services.insert_many`.

    python bench/load_patients.py --start 0 --count 50000 --seed 4

Run by bench/driver.py (several processes side by side, each on its own slice of numbers) with the
bench database's environment (DATABASE_URL, DJANGO_SETTINGS_MODULE). It skips HTTP and the transaction
Bundle machinery but not the write path that matters for search: every Patient is validated
(`checked_body`) and written with its versions, search-index rows and compartment rows by the same
function the server's creates and transactions use. Batches of `--batch` Patients share one database
transaction, as a transaction Bundle of that size would.

Patient n is a function of (seed, n) only, so slices loaded by different processes are the same data a
single process would write. Names, cities and streets come from the demo-data lists
(resources/demo/people.py), so lookups by family/given/city hit realistic distributions: a handful
of very common family names and many rare ones. Prints one JSON line: patients, seconds, patients/s.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# The system of the bench identifiers: S4 looks Patients up by `identifier=SYSTEM|value`.
IDENTIFIER_SYSTEM = "http://bench.example.org/fhir/patient-number"
BIRTH_FROM = date(1930, 1, 1)
BIRTH_DAYS = (date(2020, 12, 31) - BIRTH_FROM).days


def patient(seed: int, number: int) -> tuple[str, dict]:
    """(id, body) of bench Patient `number`."""
    from resources.demo import patient as demo_patient
    from resources.demo import people

    rng = random.Random(f"bench-s4-{seed}-{number}")
    fhir_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    country = people.COUNTRIES[rng.choice(sorted(people.COUNTRIES))]
    gender = "female" if rng.random() < 0.5 else "male"
    name = people.pick_name(rng, people.pick_nationality(rng, country), gender)
    birth = BIRTH_FROM + timedelta(days=rng.randrange(BIRTH_DAYS + 1))
    body = {
        "resourceType": "Patient",
        "identifier": [{"use": "usual", "system": IDENTIFIER_SYSTEM, "value": f"P{seed}-{number:07d}"}],
        "active": True,
        "name": [{"use": "official", "family": name.family, "given": list(name.given)}],
        "telecom": [{"system": "phone", "value": people.fill(country.phone, rng), "use": "mobile"}],
        "gender": gender,
        "birthDate": birth.isoformat(),
        # The demo generator's address builder: a street, city, state and postal code of the country.
        "address": [demo_patient._address(rng, country)],
    }
    return fhir_id, body


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fhirplatform.settings.production")
    import django

    django.setup()
    from django.db import transaction

    from resources.services import checked_body, insert_many

    t0 = time.perf_counter()
    end = args.start + args.count
    for first in range(args.start, end, args.batch):
        items = []
        for number in range(first, min(first + args.batch, end)):
            fhir_id, body = patient(args.seed, number)
            items.append(("Patient", fhir_id, checked_body("Patient", body), "POST"))
        with transaction.atomic():
            insert_many(items)
    seconds = time.perf_counter() - t0
    print(
        json.dumps(
            {"patients": args.count, "seconds": round(seconds, 2), "per_s": round(args.count / seconds, 1)}
        )
    )


if __name__ == "__main__":
    main()
