"""Generated search conformance: for every official R4 search parameter and every official example of
its base type, a value that the parameter's own FHIRPath expression yields from the stored example
finds that example (https://hl7.org/fhir/R4/search.html).

The values come from fhirpathpy evaluating the official expression on the example, independently of
the server's own index extraction; `.where(resolve() is X)` (which fhirpathpy cannot run) is applied
here as a filter on the reference's target type.
"""

from __future__ import annotations

import re
import tarfile
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import pytest
from fhirpathpy import evaluate
from fhirpathpy.models import models

from resources import definitions, fhirjson

from .test_official_examples import BREAK_THE_SPEC

ARCHIVE = Path(__file__).parent / "data" / "r4-examples.tar.xz"
_RESOLVE = re.compile(r"\.where\(resolve\(\) is (\w+)\)")
_SKIP_TYPES = {"composite", "special"}


def _examples_by_type() -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = defaultdict(list)
    with tarfile.open(ARCHIVE) as archive:
        for member in archive.getmembers():
            if member.name in BREAK_THE_SPEC:
                continue
            body = fhirjson.loads(archive.extractfile(member).read())
            if "id" in body:
                grouped[body["resourceType"]].append(body)
    return grouped


EXAMPLES = _examples_by_type()


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace(",", "\\,").replace("$", "\\$").replace("|", "\\|")


def _values(resource: dict, expression: str) -> list:
    """Evaluate each `|` part of the official expression, applying resolve() filters ourselves."""
    out = []
    for part in _split_union(expression):
        wanted = _RESOLVE.findall(part)
        plain = _RESOLVE.sub("", part)
        try:
            found = evaluate(resource, plain, {}, models["r4"])
        except Exception:  # fhirpathpy refuses some expressions (e.g. `as` on collections)
            continue
        for value in found:
            if wanted and not _reference_is(value, wanted):
                continue
            out.append(value)
    return out


def _split_union(expression: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in expression:
        depth += char == "("
        depth -= char == ")"
        if char == "|" and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    parts.append(current.strip())
    return parts


def _reference_is(value, types: list[str]) -> bool:
    reference = value.get("reference", "") if isinstance(value, dict) else ""
    segments = reference.split("/")
    return len(segments) >= 2 and segments[-2] in types


def _query_value(param_type: str, value) -> str | None:
    """A search value that must match `value` (an element the expression yielded)."""
    if isinstance(value, bool):
        if param_type != "token":
            return None
        return "true" if value else "false"
    if isinstance(value, (str, int, Decimal, float)):
        text = str(value)
        if param_type == "date":
            return text if re.match(r"\d{4}", text) else None
        if param_type in ("token", "uri", "string", "number", "quantity"):
            return _escape(text) if len(text) <= 200 else None
        if param_type == "reference":
            return _escape(text) if len(text) <= 200 else None
        return None
    if not isinstance(value, dict):
        return None
    if param_type == "token":
        if "coding" in value or "text" in value and "code" not in value and "value" not in value:
            codings = [c for c in value.get("coding", []) if "code" in c]
            value = codings[0] if codings else None
            if value is None:
                return None
        code = value.get("code", value.get("value"))
        if not isinstance(code, str) or len(code) > 200:
            return None
        system = value.get("system")
        if "value" in value and system in ("phone", "email", "fax", "url", "sms", "pager", "other"):
            system = None  # a ContactPoint: its system is a kind, not a code system
        return f"{_escape(system)}|{_escape(code)}" if system else _escape(code)
    if param_type == "string":
        for key in ("family", "text", "city", "postalCode", "state", "country", "district"):
            if isinstance(value.get(key), str):
                return _escape(value[key])
        for key in ("given", "line", "prefix"):
            if value.get(key):
                return _escape(value[key][0])
        return None
    if param_type == "date":
        if "start" in value:
            return f"ge{value['start']}"
        if "end" in value:
            return f"le{value['end']}"
        events = value.get("event")
        return events[0] if events else None
    if param_type == "quantity":
        number = value.get("value")
        if number is None:
            return None
        system, code = value.get("system"), value.get("code")
        return f"{number}|{_escape(system or '')}|{_escape(code)}" if code else str(number)
    if param_type == "reference":
        reference = value.get("reference")
        if not isinstance(reference, str) or reference.startswith(("#", "urn:")):
            return None
        return _escape(reference)
    return None


@pytest.mark.django_db
# AuditEvent is the server's own audit log, read-only, searched by its own endpoint (audit/api.py).
@pytest.mark.parametrize("resource_type", sorted(set(EXAMPLES) - {"AuditEvent"}))
def test_examples_are_found_by_their_own_values(fhir, resource_type):
    examples = []
    for body in EXAMPLES[resource_type]:
        response = fhir.put(f"{resource_type}/{body['id']}", body)
        assert response.status_code == 201, response.content[:500]
        # The values as stored: the server sets some itself (a Subscription's status, for one).
        examples.append(response.json_body)
    misses, tried = [], 0
    for code, param in definitions.search_parameters(resource_type).items():
        if param.type in _SKIP_TYPES or not param.expression or code in ("_id", "_lastUpdated"):
            continue
        for body in examples:
            for value in _values(body, param.expression):
                query = _query_value(param.type, value)
                if query is None:
                    continue
                tried += 1
                response = fhir.get(f"{resource_type}?{code}={_url(query)}&_id={body['id']}")
                ids = [
                    e["resource"]["id"]
                    for e in (response.json_body or {}).get("entry", [])
                    if e["search"]["mode"] == "match"
                ]
                if response.status_code != 200 or body["id"] not in ids:
                    misses.append(f"{code}={query} on {body['id']}: {response.status_code}")
                break  # one value per example and parameter keeps the run short
    assert misses == [], f"{len(misses)} of {tried} lookups missed:\n" + "\n".join(misses[:40])


def _url(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")
