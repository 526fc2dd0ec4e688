"""One module per search-parameter type (https://hl7.org/fhir/R4/search.html#ptypes), and the two
parameters answered from the Resource row itself: `_id` (fhir_id) and `_lastUpdated` (last_updated).

`:missing` (#missing) is the same for every indexed type: `true` means the resource has no index row
for the parameter, `false` that it has at least one.
"""

from __future__ import annotations

from collections.abc import Callable

from django.db.models import Q

from ...models import (
    CompositeIndex,
    DateIndex,
    NumberIndex,
    QuantityIndex,
    StringIndex,
    TokenIndex,
    UriIndex,
)
from ..context import Context, Param, index_rows
from ..params import InvalidSearch, parse_bool, unescape
from . import composite, date, number, quantity, reference, string, token, uri

COMPILERS: dict[str, Callable[[Context, Param, str | None, list[str]], Q]] = {
    "number": number.compile,
    "date": date.compile,
    "string": string.compile,
    "token": token.compile,
    "reference": reference.compile,
    "composite": composite.compile,
    "quantity": quantity.compile,
    "uri": uri.compile,
}

_MODELS = {
    "number": NumberIndex,
    "date": DateIndex,
    "string": StringIndex,
    "token": TokenIndex,
    "composite": CompositeIndex,
    "quantity": QuantityIndex,
    "uri": UriIndex,
}

# Parameters whose values live on the Resource row; every resource has them, so no :missing.
ROW_PARAMS = frozenset({"_id", "_lastUpdated"})


def compile(ctx: Context, param: Param, modifier: str | None, values: list[str]) -> Q:
    if param.code == "_id":
        return _resource_id(modifier, values)
    if param.code == "_lastUpdated":
        if modifier is not None:
            raise InvalidSearch(f"modifier ':{modifier}' is not defined for _lastUpdated")
        return date.last_updated(values)
    if modifier == "missing":
        return _missing(param, values)
    return COMPILERS[param.type](ctx, param, modifier, values)


def _present(param: Param) -> Q:
    if param.type == "reference":
        return reference.present(param)
    return Q(index_rows(_MODELS[param.type], param.resource_type, param.code))


def _missing(param: Param, values: list[str]) -> Q:
    condition = Q()
    for raw in values:
        present = _present(param)
        condition |= ~present if parse_bool(raw) else present
    return condition


def _resource_id(modifier: str | None, values: list[str]) -> Q:
    ids = [reference.check_id(unescape(raw)) for raw in values]
    if modifier is None:
        return Q(fhir_id__in=ids)
    if modifier == "not":
        return ~Q(fhir_id__in=ids)
    raise InvalidSearch(f"modifier ':{modifier}' is not defined for _id")
