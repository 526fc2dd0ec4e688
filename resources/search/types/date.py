"""date parameters (https://hl7.org/fhir/R4/search.html#date) with the range semantics of #prefix.

Both sides are ranges: the search value covers its precision (`2024-05` is the whole month), the
stored row covers [low, high] (a day, a Period, an instant), NULL meaning open. With S the search
range and R the stored one:

    eq  R lies inside S            ne  not eq (per row: some value lies outside S)
    gt  R reaches past S's end     lt  R starts before S's start
    ge  gt or eq                   le  lt or eq
    sa  R starts after S ends      eb  R ends before S starts
    ap  R overlaps S widened by 10 % of the distance between now and the value

`_lastUpdated` applies the same rules to the point `Resource.last_updated`.
"""

from __future__ import annotations

from datetime import datetime

from django.db.models import Q
from django.utils import timezone

from ...fhirdates import parse_range, shift
from ...models import DateIndex
from ..context import Context, Param, index_rows
from ..params import InvalidSearch, split_prefix


def parse_date(text: str) -> tuple[datetime, datetime]:
    # An unencoded '+' of a zone offset arrives as a space once the query string is decoded.
    text = text.replace(" ", "+")
    try:
        return parse_range(text)
    except (ValueError, OverflowError) as exc:
        raise InvalidSearch(f"'{text}' is not a date, dateTime or instant") from exc


def _lt(field: str, bound: datetime, open_ended: bool) -> Q:
    q = Q(**{f"{field}__lt": bound})
    return q | Q(**{f"{field}__isnull": True}) if open_ended else q


def _gt(field: str, bound: datetime, open_ended: bool) -> Q:
    q = Q(**{f"{field}__gt": bound})
    return q | Q(**{f"{field}__isnull": True}) if open_ended else q


def date_condition(
    prefix: str, low: datetime, high: datetime, *, low_field: str, high_field: str, open_ended: bool = True
) -> Q:
    """Rows whose range [low_field, high_field] satisfies `prefix` against the search range.

    `open_ended`: a NULL bound means the range is open on that side (index rows); columns that are
    never NULL (last_updated) skip the IS NULL tests.
    """
    # `low <= high` is implied by `high <= high` (a row starts before it ends) but stated: it bounds
    # `low` on both sides, so the planner estimates the range from one column's histogram and scans
    # (type, param, low) in the date index instead of guessing from two independent half-ranges.
    inside = Q(**{f"{low_field}__gte": low, f"{low_field}__lte": high, f"{high_field}__lte": high})
    if prefix == "eq":
        return inside
    if prefix == "ne":
        return _lt(low_field, low, open_ended) | _gt(high_field, high, open_ended)
    if prefix == "gt":
        return _gt(high_field, high, open_ended)
    if prefix == "lt":
        return _lt(low_field, low, open_ended)
    if prefix == "ge":
        return _gt(high_field, high, open_ended) | inside
    if prefix == "le":
        return _lt(low_field, low, open_ended) | inside
    if prefix == "sa":
        return Q(**{f"{low_field}__gt": high})
    if prefix == "eb":
        return Q(**{f"{high_field}__lt": low})
    margin = abs(timezone.now() - low) / 10
    starts = Q(**{f"{low_field}__lte": shift(high, margin)})
    ends = Q(**{f"{high_field}__gte": shift(low, -margin)})
    if open_ended:
        starts |= Q(**{f"{low_field}__isnull": True})
        ends |= Q(**{f"{high_field}__isnull": True})
    return starts & ends


def prefixed_date(text: str, *, low_field: str, high_field: str, open_ended: bool = True) -> Q:
    prefix, rest = split_prefix(text)
    low, high = parse_date(rest)
    return date_condition(
        prefix, low, high, low_field=low_field, high_field=high_field, open_ended=open_ended
    )


def compile(ctx: Context, param: Param, modifier: str | None, values: list[str]) -> Q:
    if modifier is not None:
        raise InvalidSearch(f"modifier ':{modifier}' is not defined for date parameters")
    condition = Q()
    for raw in values:
        condition |= prefixed_date(raw, low_field="low", high_field="high")
    return Q(index_rows(DateIndex, param.resource_type, param.code, condition))


def last_updated(values: list[str]) -> Q:
    """`_lastUpdated` on the Resource row itself: a point, never NULL."""
    condition = Q()
    for raw in values:
        condition |= prefixed_date(raw, low_field="last_updated", high_field="last_updated", open_ended=False)
    return condition
