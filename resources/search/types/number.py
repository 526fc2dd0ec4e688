"""number parameters (https://hl7.org/fhir/R4/search.html#number) and the prefix arithmetic that
quantity and composite components share (#prefix).

A search number stands for the interval its precision implies: `100` is [99.5, 100.5), `100.00` is
[99.995, 100.005), `1e2` (one significant figure) is [50, 150). `eq`, `ne`, `sa`, `eb` and `ap` use
that interval; `gt lt ge le` compare with the exact value, as the table in #number shows. Stored
values are points. `ap` widens the interval to 10 % of the value (#prefix). The spec's own example
gives `1e2` as [95, 105), which contradicts its "one significant figure"; the precision rule is
applied consistently here.
"""

from __future__ import annotations

import re
from decimal import Decimal

from django.db.models import Q

from ...models import NumberIndex
from ..context import Context, Param, index_rows
from ..params import InvalidSearch, split_prefix

_NUMBER = re.compile(r"[+-]?(\d+(\.\d+)?|\.\d+)([eE][+-]?\d{1,3})?")
_TENTH = Decimal("0.1")


def parse_number(text: str) -> Decimal:
    if not _NUMBER.fullmatch(text):
        raise InvalidSearch(f"'{text}' is not a number")
    return Decimal(text)


def half_unit(value: Decimal) -> Decimal:
    """Half a unit of the last significant digit: the implicit precision of a search number.

    Never finer than 15 significant digits: SQLite keeps decimals as doubles, and a narrower
    interval could fall between two adjacent doubles and match nothing.
    """
    return max(Decimal(5).scaleb(value.as_tuple().exponent - 1), abs(value).scaleb(-15))


def number_condition(prefix: str, value: Decimal, field: str) -> Q:
    """Rows whose point value in `field` satisfies `prefix value` (prefix already validated)."""
    h = half_unit(value)
    low, high = value - h, value + h
    if prefix == "eq":
        return Q(**{f"{field}__gte": low, f"{field}__lt": high})
    if prefix == "ne":
        return Q(**{f"{field}__lt": low}) | Q(**{f"{field}__gte": high})
    if prefix == "gt":
        return Q(**{f"{field}__gt": value})
    if prefix == "lt":
        return Q(**{f"{field}__lt": value})
    if prefix == "ge":
        return Q(**{f"{field}__gte": value})
    if prefix == "le":
        return Q(**{f"{field}__lte": value})
    if prefix == "sa":
        return Q(**{f"{field}__gte": high})
    if prefix == "eb":
        return Q(**{f"{field}__lt": low})
    # ap: the precision interval or 10 % of the value, whichever is wider
    margin = max(h, abs(value) * _TENTH)
    return Q(**{f"{field}__gte": value - margin, f"{field}__lte": value + margin})


def prefixed_number(text: str, field: str) -> Q:
    prefix, rest = split_prefix(text)
    return number_condition(prefix, parse_number(rest), field)


def compile(ctx: Context, param: Param, modifier: str | None, values: list[str]) -> Q:
    if modifier is not None:
        raise InvalidSearch(f"modifier ':{modifier}' is not defined for number parameters")
    condition = Q()
    for raw in values:
        condition |= prefixed_number(raw, "value")
    return Q(index_rows(NumberIndex, param.resource_type, param.code, condition))
