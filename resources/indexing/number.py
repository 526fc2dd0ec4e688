"""Number index rows (https://hl7.org/fhir/R4/search.html#number).

Row columns: (value,). decimal and integer values as Decimal, keeping the written precision (the
query side derives the implicit range of `eq` from the search value, not from the stored one).
A Range gives its low and its high value as two rows. Values that do not fit the column
(NUMERIC(38, 18): 20 integer digits) are left out rather than failing the write.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

_LIMIT = Decimal(10) ** 20


def decimal_value(value: object) -> Decimal | None:
    """The JSON number as a Decimal that fits the index columns, or None."""
    if type(value) is int:
        number = Decimal(value)
    elif type(value) is Decimal:
        number = value
    elif type(value) is float:
        try:
            number = Decimal(repr(value))
        except InvalidOperation:
            return None
    else:
        return None
    if not number.is_finite() or abs(number) >= _LIMIT:
        return None
    return number


def number_rows(values: list) -> list[tuple]:
    rows = []
    for value in values:
        number = decimal_value(value)
        if number is not None:
            rows.append((number,))
    return rows


def range_rows(values: list) -> list[tuple]:
    rows = []
    for item in values:
        if type(item) is dict:
            for end in ("low", "high"):
                bound = item.get(end)
                if type(bound) is dict:
                    number = decimal_value(bound.get("value"))
                    if number is not None:
                        rows.append((number,))
    return rows


CONVERTERS = {
    "decimal": number_rows,
    "integer": number_rows,
    "Range": range_rows,
}
