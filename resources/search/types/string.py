"""string parameters (https://hl7.org/fhir/R4/search.html#string).

By default a value matches stored strings that start with it, ignoring case, accents and
whitespace differences: both sides are folded by `normalize_string` and compared on the normalised
`value` column. `:contains` matches anywhere in that column; `:exact` compares the `exact` column
(the string as written) for equality, case and accents included.
"""

from __future__ import annotations

from django.db.models import Q

from ...models import StringIndex
from ..context import Context, Param, index_rows
from ..normalize import MAX_LENGTH, normalize_string
from ..params import InvalidSearch, unescape


def normalised(raw: str) -> str:
    text = normalize_string(unescape(raw))
    if not text:
        raise InvalidSearch("nothing to search for once case, accents and spaces are folded")
    return text


def compile(ctx: Context, param: Param, modifier: str | None, values: list[str]) -> Q:
    if modifier == "exact":
        condition = Q(exact__in=[unescape(raw)[:MAX_LENGTH] for raw in values])
    elif modifier == "contains":
        condition = Q()
        for raw in values:
            condition |= Q(value__contains=normalised(raw))
    elif modifier is None:
        condition = Q()
        for raw in values:
            condition |= Q(value__startswith=normalised(raw))
    else:
        raise InvalidSearch(f"modifier ':{modifier}' is not defined for string parameters")
    return Q(index_rows(StringIndex, param.resource_type, param.code, condition))
