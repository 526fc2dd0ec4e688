"""Small constructors for FHIR R4 datatypes (CodeableConcept, Quantity, Reference, dateTime, ids)
and for transaction Bundle entries, shared by the demo builders.
"""

from __future__ import annotations

import random
import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

from . import codes


def coding(system: str, code: str, display: str | None = None) -> dict:
    out = {"system": system, "code": code}
    if display:
        out["display"] = display
    return out


def concept(system: str, code: str, display: str | None = None, text: str | None = None) -> dict:
    out: dict = {"coding": [coding(system, code, display)]}
    if text or display:
        out["text"] = text or display
    return out


def clinical_concept(code: str, display: str) -> dict:
    """A LOINC code ('2339-0', with its check digit) or else a SNOMED CT code."""
    system = codes.LOINC if "-" in code else codes.SNOMED
    return concept(system, code, display)


def decimal(value: float, places: int) -> Decimal | int:
    """A FHIR decimal with a fixed number of places; whole-number measures stay JSON integers.

    Going through the formatted text keeps the value exact and its precision visible (72.0 vs 72).
    """
    if places == 0:
        return int(round(value))
    return Decimal(f"{value:.{places}f}")


def quantity(value: Decimal | int, unit: str) -> dict:
    return {"value": value, "unit": unit, "system": codes.UCUM, "code": unit}


def ref(target: str, display: str | None = None) -> dict:
    out = {"reference": target}
    if display:
        out["display"] = display
    return out


def new_uuid(rng: random.Random) -> str:
    """A version-4 UUID drawn from `rng`, so fullUrls repeat with the seed."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def zone(offset_hours: int) -> timezone:
    return timezone(timedelta(hours=offset_hours))


def date_time(moment: datetime) -> str:
    """FHIR dateTime with seconds and the moment's UTC offset, e.g. 2021-03-04T09:15:00+01:00."""
    return moment.isoformat(timespec="seconds")


def instant(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


def fhir_date(day: date) -> str:
    return day.isoformat()


def post(full_url: str, resource: dict) -> dict:
    return {
        "fullUrl": full_url,
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"]},
    }


def put(resource: dict) -> dict:
    rtype, rid = resource["resourceType"], resource["id"]
    return {"resource": resource, "request": {"method": "PUT", "url": f"{rtype}/{rid}"}}


def transaction(entries: list[dict]) -> dict:
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}
