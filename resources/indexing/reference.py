"""Reference index rows (https://hl7.org/fhir/R4/search.html#reference) and the reading of literal
references (https://hl7.org/fhir/R4/references.html#literal).

Row columns: (target_type, target_id, url, url_version).

- A relative reference `Type/id` (a `/_history/n` suffix dropped, since search is on the resource),
  or an absolute one under settings.FHIR_BASE_URL, is a local target: target_type + target_id, url NULL.
- Any other absolute URL, `urn:uuid:` and `urn:oid:` references: url as written, target NULL.
  (An absolute URL on another server is not a local resource even when it ends in `Type/id`.)
- canonical `url|version` (https://hl7.org/fhir/R4/references.html#canonical): url and url_version.
- uri-typed elements of a reference parameter: url.
- A contained reference `#id` gives no row: search addresses resources, and contained ones are not.
- A Reference with only an identifier gives no row here; its identifier is indexed as a token under
  the parameter name `<code>:identifier` (https://hl7.org/fhir/R4/search.html#modifiers, :identifier).
- `Bundle.entry[0].resource` (Bundle `composition`, `message`): the resource's own Type/id.
"""

from __future__ import annotations

import re

from django.conf import settings

from ..definitions import loader
from . import token

_LOCAL = re.compile(r"([A-Z][A-Za-z]{0,63})/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?")
_TAIL = re.compile(r".*/([A-Z][A-Za-z]{0,63})/[A-Za-z0-9\-.]{1,64}(?:/_history/[A-Za-z0-9\-.]{1,64})?")

URL_MAX = 512
ID_MAX = 64


def local_target(ref: str) -> tuple[str, str] | None:
    """(type, id) when `ref` names a resource of this server, else None."""
    match = _LOCAL.fullmatch(ref)
    if match is None:
        base = settings.FHIR_BASE_URL.rstrip("/")
        if not base or not ref.startswith(base + "/"):
            return None
        match = _LOCAL.fullmatch(ref, len(base) + 1)
        if match is None:
            return None
    if match.group(1) not in loader.resource_types():
        return None
    return match.group(1), match.group(2)


def target_type(item: object) -> str | None:
    """The resource type a Reference points at, as `where(resolve() is T)` asks.

    Relative and absolute literal references carry it in the URL; a logical reference (identifier
    only) in Reference.type, which may be a bare type or a StructureDefinition URL.
    """
    if type(item) is not dict:
        return None
    ref = item.get("reference")
    if type(ref) is str:
        match = _LOCAL.fullmatch(ref) or _TAIL.fullmatch(ref)
        return match.group(1) if match else None
    declared = item.get("type")
    if type(declared) is str and declared:
        return declared.rsplit("/", 1)[-1]
    return None


def reference_rows(values: list) -> list[tuple]:
    rows = []
    for item in values:
        if type(item) is not dict:
            continue
        ref = item.get("reference")
        if type(ref) is not str or not ref or ref[0] == "#":
            continue
        local = local_target(ref)
        if local is not None:
            rows.append((local[0], local[1], None, None))
        else:
            rows.append((None, None, ref[:URL_MAX], None))
    return rows


def canonical_rows(values: list) -> list[tuple]:
    rows = []
    for value in values:
        if type(value) is not str or not value:
            continue
        url, bar, version = value.partition("|")
        rows.append((None, None, url[:URL_MAX], version[:ID_MAX] if bar and version else None))
    return rows


def uri_rows(values: list) -> list[tuple]:
    rows = []
    for value in values:
        if type(value) is not str or not value:
            continue
        local = local_target(value)
        if local is not None:
            rows.append((local[0], local[1], None, None))
        else:
            rows.append((None, None, value[:URL_MAX], None))
    return rows


def resource_rows(values: list) -> list[tuple]:
    rows = []
    for resource in values:
        if type(resource) is dict:
            rtype, rid = resource.get("resourceType"), resource.get("id")
            if type(rtype) is str and type(rid) is str:
                rows.append((rtype, rid[:ID_MAX], None, None))
    return rows


def identifier_token_rows(values: list) -> list[tuple]:
    """Token rows of the identifiers of references, for `<code>:identifier`."""
    idents = [item["identifier"] for item in values if type(item) is dict and "identifier" in item]
    return token.identifier_rows(idents) if idents else []


CONVERTERS = {
    "Reference": reference_rows,
    "canonical": canonical_rows,
    "uri": uri_rows,
    "Resource": resource_rows,
}
