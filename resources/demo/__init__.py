"""Deterministic, Synthea-shaped demo data as FHIR R4 transaction Bundles (plain dicts).

This package only builds data; it never touches the database. The `generate_demo_data` management
command passes the bundles to `resources.transaction.process_bundle`.

- people.py: names, languages and places; codes.py: clinical terminology;
- fhir.py: datatype and Bundle entry helpers;
- reference.py: the shared Organizations, Practitioners, PractitionerRoles and CareTeams (PUT);
- patient.py, observations.py, clinical.py: resource bodies; builder.py: one patient's entries.

The same seed always gives the same bundles, byte for byte once serialised.
"""

from __future__ import annotations

from collections.abc import Iterator

from .builder import AS_OF, patient_entries
from .fhir import transaction
from .patient import mrn
from .reference import reference_bundle

__all__ = ["AS_OF", "mrn", "patient_bundle", "patient_bundles", "patient_entries", "reference_bundle"]


def patient_bundle(seed: int, numbers: range | list[int]) -> dict:
    """One transaction Bundle holding the entries of the given patients (numbers are 1-based)."""
    entries: list[dict] = []
    for number in numbers:
        entries += patient_entries(seed, number)
    return transaction(entries)


def patient_bundles(seed: int, patients: int, batch_size: int = 1) -> Iterator[tuple[range, dict]]:
    """(patient numbers, Bundle) for patients 1..`patients`, `batch_size` patients per Bundle."""
    for first in range(1, patients + 1, batch_size):
        numbers = range(first, min(first + batch_size, patients + 1))
        yield numbers, patient_bundle(seed, numbers)
