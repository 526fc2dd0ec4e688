"""Bundle text assembled around stored resource bodies (https://hl7.org/fhir/R4/bundle.html).

Entries embed the stored JSON text as it is, so a Bundle of N resources costs N string joins rather
than N parses and dumps.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from django.utils import timezone

from interactions.types import Stored

from .. import fhirjson


def entry(resource_text: str | None, **fields: object) -> str:
    """One entry: `fields` (fullUrl, search, request, response) as JSON, plus the raw resource text."""
    parts = [f'"{key}":{fhirjson.dumps(value)}' for key, value in fields.items() if value is not None]
    if resource_text:
        parts.append(f'"resource":{resource_text}')
    return "{" + ",".join(parts) + "}"


def bundle(
    bundle_type: str,
    entries: list[str],
    *,
    total: int | None = None,
    links: list[tuple[str, str]] = (),
    timestamp: datetime | None = None,
) -> str:
    head = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": fhirjson.instant(timestamp or timezone.now())},
        "type": bundle_type,
    }
    if total is not None:
        head["total"] = total
    if links:
        head["link"] = [{"relation": rel, "url": url} for rel, url in links]
    text = fhirjson.dumps(head)
    if not entries:
        return text
    return text[:-1] + ',"entry":[' + ",".join(entries) + "]}"


def full_url(base: str, stored: Stored) -> str:
    return f"{base}/{stored.resource_type}/{stored.fhir_id}"


def response_fields(stored: Stored, status: str, *, location: bool) -> dict:
    fields: dict[str, object] = {"status": status}
    if location:
        fields["location"] = f"{stored.resource_type}/{stored.fhir_id}/_history/{stored.version}"
    fields["etag"] = f'W/"{stored.version}"'
    fields["lastModified"] = fhirjson.instant(stored.last_updated)
    return fields
