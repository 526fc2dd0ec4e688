"""FHIR JSON text in and out (https://hl7.org/fhir/R4/json.html).

Decimals are parsed as `Decimal` so that `1.50` is stored and served as `1.50`: FHIR decimals carry
their precision. The canonical form the server stores is compact UTF-8 JSON with `resourceType`, `id`
and `meta` first.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import simplejson

from .outcomes import bad_request

_ID_RE = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def loads(text: str | bytes) -> object:
    """Parse JSON text; raises FhirError(400) with the position of the first error."""
    if (b"\\u0000" if isinstance(text, bytes) else "\\u0000") in text:
        # PostgreSQL text cannot hold NUL, and FHIR strings have no use for it.
        raise bad_request("The JSON contains a NUL character (\\u0000), which cannot be stored", code="value")
    try:
        return simplejson.loads(text, use_decimal=True, parse_constant=_refuse_constant)
    except UnicodeDecodeError as exc:
        raise bad_request(f"Request body is not UTF-8: {exc.reason}", code="structure") from exc
    except simplejson.JSONDecodeError as exc:
        raise bad_request(f"Malformed JSON: {exc}", code="structure") from exc
    except ValueError as exc:
        # Not the parser's own complaint (a number with thousands of digits...): no internals.
        raise bad_request("Malformed JSON: a value cannot be read as JSON", code="structure") from exc
    except RecursionError as exc:
        raise bad_request("Malformed JSON: nested too deeply", code="structure") from exc


def dumps(value: object) -> str:
    """Compact canonical JSON text."""
    return simplejson.dumps(value, use_decimal=True, separators=(",", ":"), ensure_ascii=False)


def dumps_pretty(value: object) -> str:
    return simplejson.dumps(value, use_decimal=True, indent=2, ensure_ascii=False)


def is_valid_id(value: object) -> bool:
    return isinstance(value, str) and _ID_RE.fullmatch(value) is not None


def instant(moment: datetime) -> str:
    """A FHIR instant with millisecond precision in UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def with_meta(body: dict, *, fhir_id: str, version: int, last_updated: datetime) -> dict:
    """The body as stored: resourceType, id, meta (server fields set, client tags kept), then the rest."""
    meta = dict(body.get("meta") or {})
    meta["versionId"] = str(version)
    meta["lastUpdated"] = instant(last_updated)
    out = {"resourceType": body["resourceType"], "id": fhir_id, "meta": meta}
    for key, value in body.items():
        if key not in out:
            out[key] = value
    return out
