"""quantity parameters (https://hl7.org/fhir/R4/search.html#quantity).

`[prefix]number` (any unit), `[prefix]number|system|code` (that coded unit), `[prefix]number||unit`
(the code or the human-readable unit equals `unit`). The number follows the prefix and precision
rules of number search. Units are compared as written: no UCUM canonicalisation (`1000 mg` does not
match `1 g`).
"""

from __future__ import annotations

from django.db.models import Q

from ...models import QuantityIndex
from ..context import Context, Param, index_rows
from ..params import InvalidSearch, split_escaped, unescape
from .number import prefixed_number


def quantity_condition(
    raw: str, *, value_field: str, system_field: str, code_field: str, unit_field: str | None
) -> Q:
    parts = split_escaped(raw, "|")
    if len(parts) not in (1, 3):
        raise InvalidSearch(f"'{raw}' is not of the form [prefix]number or [prefix]number|system|code")
    condition = prefixed_number(unescape(parts[0]), value_field)
    if len(parts) == 1:
        return condition
    system, code = unescape(parts[1]), unescape(parts[2])
    if system:
        condition &= Q(**{system_field: system})
        if code:
            condition &= Q(**{code_field: code})
    elif code:
        unit = Q(**{code_field: code})
        if unit_field is not None:
            unit |= Q(**{unit_field: code})
        condition &= unit
    return condition


def compile(ctx: Context, param: Param, modifier: str | None, values: list[str]) -> Q:
    if modifier is not None:
        raise InvalidSearch(f"modifier ':{modifier}' is not defined for quantity parameters")
    condition = Q()
    for raw in values:
        condition |= quantity_condition(
            raw, value_field="value", system_field="system", code_field="code", unit_field="unit"
        )
    return Q(index_rows(QuantityIndex, param.resource_type, param.code, condition))
