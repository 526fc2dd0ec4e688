"""Quantity index rows (https://hl7.org/fhir/R4/search.html#quantity).

Row columns: (value, system, code, unit), as written (no UCUM canonicalisation).

- Quantity and its profiles (Age, Duration, Distance, Count, SimpleQuantity, MoneyQuantity): one row.
- Money: value, system `urn:iso:std:iso:4217` (https://hl7.org/fhir/R4/datatypes.html#Money), the
  currency as code and unit.
- Range: its low and its high as two rows (each a SimpleQuantity).
- SampledData: its origin.
A row is written when the value is present; a value beyond the column (20 integer digits) is left out.
"""

from __future__ import annotations

from .number import decimal_value

MAX = 255
CURRENCY_SYSTEM = "urn:iso:std:iso:4217"


def _str(value: object) -> str | None:
    return value[:MAX] if type(value) is str and value else None


def _row(quantity: object) -> tuple | None:
    if type(quantity) is not dict:
        return None
    value = decimal_value(quantity.get("value"))
    if value is None:
        return None
    return (value, _str(quantity.get("system")), _str(quantity.get("code")), _str(quantity.get("unit")))


def quantity_rows(values: list) -> list[tuple]:
    rows = []
    for quantity in values:
        row = _row(quantity)
        if row is not None:
            rows.append(row)
    return rows


def money_rows(values: list) -> list[tuple]:
    rows = []
    for money in values:
        if type(money) is dict:
            value = decimal_value(money.get("value"))
            if value is not None:
                currency = _str(money.get("currency"))
                rows.append((value, CURRENCY_SYSTEM if currency else None, currency, currency))
    return rows


def range_rows(values: list) -> list[tuple]:
    rows = []
    for item in values:
        if type(item) is dict:
            for end in ("low", "high"):
                row = _row(item.get(end))
                if row is not None:
                    rows.append(row)
    return rows


def sampled_data_rows(values: list) -> list[tuple]:
    return quantity_rows([item.get("origin") for item in values if type(item) is dict])


CONVERTERS = {
    "Quantity": quantity_rows,
    "Money": money_rows,
    "Range": range_rows,
    "SampledData": sampled_data_rows,
}
