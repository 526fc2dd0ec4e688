"""reference parameters (https://hl7.org/fhir/R4/search.html#reference).

Value forms: `id` (any target type the parameter allows), `Type/id`, `Type/id/_history/v` (the
version is not searched: the index keeps the current reference only), an absolute URL (the `url`
column, or the local `Type/id` when it starts with this server's base), and a canonical
`url|version`. Modifiers: `:[Type]` restricts the target type (`subject:Patient=123`),
`:identifier` searches `Reference.identifier` as a token (rows under param `<code>:identifier`).
A `Type/id` or `:[Type]` outside the parameter's declared targets is searched as given (stored data
does not always keep to the targets); the bare `id` form looks among the declared targets. Canonical
elements may hold relative references (`Library/x`) that the index keeps as URLs, so `id` and
`Type/id` also match the `url` column as written.
`:above`/`:below` on canonical references would need version ordering: refused as not-supported.
"""

from __future__ import annotations

import re

from django.conf import settings
from django.db.models import Q

from ...definitions import resource_types
from ...models import ReferenceIndex, TokenIndex
from ..context import Context, Param, index_rows
from ..params import InvalidSearch, UnsupportedModifier, split_escaped, unescape
from .token import token_condition

_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_ABSOLUTE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")


def check_id(value: str) -> str:
    if not _ID.fullmatch(value):
        raise InvalidSearch(f"'{value}' is not a resource id")
    return value


def _local(param: Param, type_filter: str | None, value: str) -> Q:
    """`id` or `Type/id` (a version suffix dropped). The text as written is also matched against the
    `url` column: canonical elements hold relative forms such as `Library/x` as URLs."""
    path = value.split("/_history/", 1)[0]
    parts = path.split("/")
    if len(parts) == 1:
        fhir_id = check_id(parts[0])
        if type_filter is not None:
            target = Q(target_type=type_filter, target_id=fhir_id)
        elif param.definition.targets:
            # the target types lead the reference_target index
            target = Q(target_type__in=param.definition.targets, target_id=fhir_id)
        else:
            target = Q(target_id=fhir_id)
        return target | Q(url=value)
    if len(parts) != 2:
        raise InvalidSearch(f"'{value}' is not an id, Type/id or absolute URL")
    target_type, fhir_id = check_type(parts[0]), check_id(parts[1])
    if type_filter is not None and target_type != type_filter:
        raise InvalidSearch(f"'{value}' contradicts the type modifier ':{type_filter}'")
    return Q(target_type=target_type, target_id=fhir_id) | Q(url=value)


def check_type(name: str) -> str:
    """A resource type; not checked against the parameter's declared targets, since stored data
    does not always keep to them (a search for such a reference finds what is there)."""
    if name not in resource_types():
        raise InvalidSearch(f"'{name}' is not a resource type")
    return name


def _bases(ctx: Context) -> list[str]:
    bases = [*ctx.base_urls, settings.FHIR_BASE_URL]
    return [b.rstrip("/") + "/" for b in bases if b]


def reference_condition(ctx: Context, param: Param, type_filter: str | None, raw: str) -> Q:
    parts = split_escaped(raw, "|")
    if len(parts) == 2 and type_filter is None:
        url, version = (unescape(p) for p in parts)
        if not url or not version:
            raise InvalidSearch(f"'{raw}' is not a canonical url|version")
        return Q(url=url, url_version=version)
    if len(parts) > 1:
        raise InvalidSearch(f"'{raw}' has an unexpected '|'")
    value = unescape(raw)
    if value.startswith("#"):
        # a reference to a contained resource: only canonical elements keep it, as written
        return Q(url=value)
    if _ABSOLUTE.match(value):
        condition = Q(url=value)
        for base in _bases(ctx):
            if value.startswith(base):
                try:
                    condition |= _local(param, type_filter, value[len(base) :])
                except InvalidSearch:
                    pass  # under our base but not a resource address: only the URL can match
        return condition
    return _local(param, type_filter, value)


def compile(ctx: Context, param: Param, modifier: str | None, values: list[str]) -> Q:
    if modifier == "identifier":
        condition = Q()
        for raw in values:
            condition |= token_condition(raw)
        return Q(index_rows(TokenIndex, param.resource_type, f"{param.code}:identifier", condition))
    if modifier in ("above", "below"):
        raise UnsupportedModifier(f"modifier ':{modifier}' is not supported on reference parameters")
    if modifier is not None and modifier not in resource_types():
        raise InvalidSearch(f"modifier ':{modifier}' is not defined for reference parameters")
    condition = Q()
    for raw in values:
        condition |= reference_condition(ctx, param, modifier, raw)
    return Q(index_rows(ReferenceIndex, param.resource_type, param.code, condition))


def present(param: Param) -> Q:
    """The element is there: a resolvable reference or only a logical identifier."""
    return Q(index_rows(ReferenceIndex, param.resource_type, param.code)) | Q(
        index_rows(TokenIndex, param.resource_type, f"{param.code}:identifier")
    )
