"""Token index rows (https://hl7.org/fhir/R4/search.html#token): Identifier system|value pairs."""

from __future__ import annotations

from ..models import Resource, TokenIndex


def identifier_rows(row: Resource, body: dict) -> list[TokenIndex]:
    identifiers = body.get("identifier")
    if isinstance(identifiers, dict):  # a few types (Bundle, Composition...) have 0..1 identifier
        identifiers = [identifiers]
    if not isinstance(identifiers, list):
        return []
    rows = []
    for ident in identifiers:
        if not isinstance(ident, dict):
            continue
        value = ident.get("value")
        if value is None:
            continue
        rows.append(
            TokenIndex(
                resource=row,
                resource_type=row.resource_type,
                param="identifier",
                system=ident.get("system"),
                code=value[:255],
            )
        )
    return rows
