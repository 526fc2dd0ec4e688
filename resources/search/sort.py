"""`_sort` (https://hl7.org/fhir/R4/search.html#_sort): sort keys read from the index tables, and the
keyset predicates that page through a sorted result.

`_sort=a,-b` sorts by `a` ascending, then `b` descending; the primary key always breaks the remaining
ties, so the order is total and stable across requests (which keyset paging needs).

R4 leaves the sort value of a repeating or complex element to the server. Here a resource's sort
value for a parameter is one value taken from its index rows:

- string: the lowest normalised value ascending, the highest descending;
- date: the earliest start (`low`) ascending, the latest end (`high`) descending;
- number, quantity: the lowest value ascending, the highest descending;
- token (`code`), uri and reference (local target id, else the absolute URL): the lowest value in
  both directions, since these are identifiers rather than quantities, so `-` exactly reverses the
  ascending order;
- `_id` and `_lastUpdated`: the resource row's own columns.

Resources that lack the sort element (no index row for the parameter) sort last in both directions:
a client asking for the newest first does not want the undated ones on top.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection
from django.db.models import (
    DecimalField,
    Expression,
    F,
    Max,
    Min,
    OrderBy,
    OuterRef,
    Q,
    Subquery,
)
from django.db.models.functions import Cast, Coalesce

from ..models import (
    DateIndex,
    NumberIndex,
    QuantityIndex,
    ReferenceIndex,
    StringIndex,
    TokenIndex,
    UriIndex,
)
from ..outcomes import bad_request
from .criteria import supported_parameters
from .paging import BACKWARD, KIND_DECIMAL, KIND_INSTANT, KIND_TEXT, Cursor

# The primary key is selected under this name next to the sort keys.
PK = "pk"


@dataclass(frozen=True)
class SortKey:
    """One `_sort` key: `alias` names its annotation, `nullable` whether resources may lack it."""

    code: str
    descending: bool
    kind: str
    nullable: bool
    expression: Expression

    @property
    def spec(self) -> str:
        return ("-" if self.descending else "") + self.code

    def alias(self, index: int) -> str:
        return f"sort_key_{index}"


def parse_sort(values: list[str], resource_types: list[str]) -> list[SortKey]:
    """The keys of every `_sort` value (repeated `_sort` parameters are read as one list).

    `resource_types` are the types searched; a code must be a sortable parameter of at least one of
    them, of one parameter type across all of them. FhirError(400) otherwise.
    """
    keys: list[SortKey] = []
    seen: set[str] = set()
    for value in values:
        for raw in value.split(","):
            item = raw.strip()
            descending = item.startswith("-")
            code = item[1:] if descending else item
            if not code or ":" in code or "-" == code[:1]:
                raise bad_request(f"Malformed _sort value '{value}'", expression=("_sort",))
            if code in seen:
                raise bad_request(f"_sort names '{code}' twice", expression=("_sort",))
            seen.add(code)
            keys.append(_key(code, descending, resource_types))
    return keys


def _key(code: str, descending: bool, resource_types: list[str]) -> SortKey:
    if code == "_id":
        return SortKey(code, descending, KIND_TEXT, False, F("fhir_id"))
    if code == "_lastUpdated":
        return SortKey(code, descending, KIND_INSTANT, False, F("last_updated"))
    kinds = set()
    for resource_type in resource_types:
        param = supported_parameters(resource_type).get(code)
        if param is not None:
            kinds.add(param.type)
    if not kinds:
        where = resource_types[0] if len(resource_types) == 1 else "the searched types"
        raise bad_request(f"Unknown _sort parameter '{code}' for {where}", expression=("_sort",))
    if len(kinds) > 1:
        raise bad_request(
            f"_sort parameter '{code}' has different types ({', '.join(sorted(kinds))}) across the "
            "searched types",
            expression=("_sort",),
        )
    param_type = kinds.pop()
    built = _BUILDERS.get(param_type)
    if built is None:
        raise bad_request(
            f"Sorting by the {param_type} parameter '{code}' is not supported",
            code="not-supported",
            expression=("_sort",),
        )
    return built(code, descending)


def _lowest_or_highest(model, column, kind: str):
    def build(code: str, descending: bool) -> SortKey:
        aggregate = (Max if descending else Min)(column)
        return SortKey(code, descending, kind, True, _per_resource(model, code, aggregate, kind))

    return build


def _lowest(model, column, kind: str):
    def build(code: str, descending: bool) -> SortKey:
        return SortKey(code, descending, kind, True, _per_resource(model, code, Min(column), kind))

    return build


def _date(code: str, descending: bool) -> SortKey:
    aggregate = Max("high") if descending else Min("low")
    return SortKey(
        code, descending, KIND_INSTANT, True, _per_resource(DateIndex, code, aggregate, KIND_INSTANT)
    )


def _per_resource(model, code: str, aggregate, kind: str) -> Expression:
    rows = (
        model.objects.filter(resource_id=OuterRef("pk"), param=code)
        .order_by()
        .values("resource_id")
        .annotate(sort_value=aggregate)
        .values("sort_value")
    )
    value = Subquery(rows)
    if kind == KIND_DECIMAL and connection.vendor == "sqlite":
        # A scalar subquery has no type affinity in SQLite, so comparing its numeric result with
        # a bound decimal (sent as text) would compare number against text; the cast restores
        # numeric comparison for the paging predicates.
        value = Cast(value, output_field=DecimalField(max_digits=38, decimal_places=18))
    return value


_BUILDERS = {
    "string": _lowest_or_highest(StringIndex, "value", KIND_TEXT),
    "date": _date,
    "number": _lowest_or_highest(NumberIndex, "value", KIND_DECIMAL),
    "quantity": _lowest_or_highest(QuantityIndex, "value", KIND_DECIMAL),
    "token": _lowest(TokenIndex, "code", KIND_TEXT),
    "uri": _lowest(UriIndex, "value", KIND_TEXT),
    "reference": _lowest(ReferenceIndex, Coalesce("target_id", "url"), KIND_TEXT),
}


def annotations(keys: list[SortKey]) -> dict[str, Expression]:
    return {key.alias(i): key.expression for i, key in enumerate(keys)}


def tie_descending(keys: list[SortKey]) -> bool:
    # The tie-break follows the last key's direction, so `_sort=-_lastUpdated` reads the
    # (resource_type, last_updated) index backwards instead of sorting.
    return bool(keys) and keys[-1].descending


def ordering(keys: list[SortKey], *, reverse: bool = False) -> list[OrderBy]:
    """ORDER BY terms; `reverse` walks the same order backwards (for `previous` pages)."""
    terms = []
    for i, key in enumerate(keys):
        descending = key.descending != reverse
        if key.nullable:
            # Missing values go last in the requested order, hence first when walking it backwards.
            terms.append(
                OrderBy(
                    F(key.alias(i)),
                    descending=descending,
                    nulls_last=None if reverse else True,
                    nulls_first=True if reverse else None,
                )
            )
        else:
            terms.append(OrderBy(F(key.alias(i)), descending=descending))
    terms.append(OrderBy(F(PK), descending=tie_descending(keys) != reverse))
    return terms


def beyond(keys: list[SortKey], cursor: Cursor) -> Q:
    """Rows strictly after the cursor's position in the sort order (before it, for a backward cursor)."""
    backward = cursor.direction == BACKWARD
    alternatives = Q(pk__lt=cursor.pk) if tie_descending(keys) != backward else Q(pk__gt=cursor.pk)
    # Built from the last key outwards: (k0 past v0) OR (k0 = v0 AND ((k1 past v1) OR (...))).
    for i in range(len(keys) - 1, -1, -1):
        key, value, alias = keys[i], cursor.values[i], keys[i].alias(i)
        same = Q(**{f"{alias}__isnull": True}) if value is None else Q(**{alias: value})
        past = _past(alias, key, value, backward)
        alternatives = (same & alternatives) if past is None else (past | (same & alternatives))
    return alternatives


def _past(alias: str, key: SortKey, value, backward: bool) -> Q | None:
    """Rows whose key lies strictly beyond `value` in the walking direction (None: there are none)."""
    if value is None:
        # Missing values come last: nothing lies after them, every present value lies before them.
        return Q(**{f"{alias}__isnull": False}) if backward else None
    lookup = "lt" if key.descending != backward else "gt"
    past = Q(**{f"{alias}__{lookup}": value})
    if key.nullable and not backward:
        past |= Q(**{f"{alias}__isnull": True})
    return past


def cursor_values(keys: list[SortKey], row: tuple, offset: int) -> tuple:
    """The sort values of a fetched row whose key columns start at `offset`."""
    return tuple(row[offset : offset + len(keys)])
