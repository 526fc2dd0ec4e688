"""uri parameters (https://hl7.org/fhir/R4/search.html#uri), `_profile` and `_source` included.

Plain search is exact, case-sensitive equality. `:below` matches stored URIs that start with the
value (`http://acme.org/fhir/` finds everything under it); `:above` matches stored URIs that the value
starts with, cut at a `/` (`.../ValueSet/123/_history/5` finds `.../ValueSet/123` and
`http://acme.org/fhir/`), so that a prefix is a path and not an arbitrary run of characters.
"""

from __future__ import annotations

from django.db.models import Q

from ...models import UriIndex
from ..context import Context, Param, index_rows
from ..lookups import starts_with
from ..params import InvalidSearch, unescape


def path_prefixes(uri: str) -> list[str]:
    """`uri` and each of its prefixes ending just before or at a '/' after the scheme's '//'."""
    start = uri.find("//")
    start = start + 2 if start >= 0 else 0
    found = {uri}
    for i in range(start, len(uri)):
        if uri[i] == "/":
            found.add(uri[:i])
            found.add(uri[: i + 1])
    found.discard("")
    return sorted(found)


def compile(ctx: Context, param: Param, modifier: str | None, values: list[str]) -> Q:
    uris = [unescape(raw) for raw in values]
    if modifier is None:
        condition = Q(value__in=uris)
    elif modifier == "below":
        condition = Q()
        for uri in uris:
            condition |= starts_with("value", uri)
    elif modifier == "above":
        condition = Q(value__in=[p for uri in uris for p in path_prefixes(uri)])
    else:
        raise InvalidSearch(f"modifier ':{modifier}' is not defined for uri parameters")
    return Q(index_rows(UriIndex, param.resource_type, param.code, condition))
