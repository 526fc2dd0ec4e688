"""composite parameters (https://hl7.org/fhir/R4/search.html#composite).

A value joins one value per component with `$` (`code-value-quantity=http://loinc.org|8480-6$lt60`);
all components must match the same index row, i.e. the same element (one Observation.component).
Each component follows its own type's rules: token forms, quantity and number prefixes, date ranges,
string starts-with. Only `:missing` applies to the whole parameter (handled with every type).

Row layout (models.CompositeIndex): component 1 in c1_system/c1_code (a reference component as
`Type/id` in c1_code), component 2 in the c2 columns of its type, a third (number) in c3_number.
"""

from __future__ import annotations

from functools import cache

from django.db.models import Q

from ...definitions import search_parameter_by_url
from ...models import CompositeIndex
from ..context import Context, Param, index_rows
from ..lookups import ends_with
from ..params import InvalidSearch, split_escaped, unescape
from .date import prefixed_date
from .number import prefixed_number
from .quantity import quantity_condition
from .reference import check_id
from .string import normalised
from .token import token_condition


@cache
def component_types(urls: tuple[str, ...]) -> tuple[str, ...]:
    types = []
    for url in urls:
        definition = search_parameter_by_url(url)
        types.append(definition.type if definition is not None else "unknown")
    return tuple(types)


def _reference(raw: str) -> Q:
    value = unescape(raw).split("/_history/", 1)[0]
    if "/" in value:
        return Q(c1_code=value)
    return ends_with("c1_code", "/" + check_id(value))


def _component(position: int, kind: str, raw: str) -> Q:
    if not raw:
        raise InvalidSearch(f"component {position + 1} is empty")
    if position == 0 and kind == "token":
        return token_condition(raw, system_field="c1_system", code_field="c1_code")
    if position == 0 and kind == "reference":
        return _reference(raw)
    if position == 1 and kind == "token":
        return token_condition(raw, system_field="c2_system", code_field="c2_code")
    if position == 1 and kind == "quantity":
        return quantity_condition(
            raw, value_field="c2_number", system_field="c2_system", code_field="c2_code", unit_field=None
        )
    if position == 1 and kind == "number":
        return prefixed_number(unescape(raw), "c2_number")
    if position == 1 and kind == "date":
        return prefixed_date(unescape(raw), low_field="c2_low", high_field="c2_high")
    if position == 1 and kind == "string":
        return Q(c2_string__startswith=normalised(raw))
    if position == 2 and kind == "number":
        return prefixed_number(unescape(raw), "c3_number")
    raise InvalidSearch(f"component {position + 1} of type {kind} is not searchable")


def compile(ctx: Context, param: Param, modifier: str | None, values: list[str]) -> Q:
    if modifier is not None:
        raise InvalidSearch(f"modifier ':{modifier}' is not defined for composite parameters")
    kinds = component_types(tuple(url for url, _expr in param.definition.components))
    condition = Q()
    for raw in values:
        parts = split_escaped(raw, "$")
        if len(parts) != len(kinds):
            raise InvalidSearch(f"expected {len(kinds)} components separated by '$'")
        row = Q()
        for position, (kind, part) in enumerate(zip(kinds, parts, strict=True)):
            row &= _component(position, kind, part)
        condition |= row
    return Q(index_rows(CompositeIndex, param.resource_type, param.code, condition))
