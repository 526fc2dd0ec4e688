"""String index rows (https://hl7.org/fhir/R4/search.html#string).

Row columns: (value, exact): `value` folded by normalize_string (the same function the query side
uses), `exact` as written, both cut to 255 characters.

- string, markdown (and the other string-like primitives): one row.
- HumanName: one row per family, given, prefix, suffix and text (the spec lets `name` match any of
  them, https://hl7.org/fhir/R4/patient.html#search).
- Address: one row per line, city, district, state, postalCode, country and text.
"""

from __future__ import annotations

from functools import lru_cache

from ..search.normalize import normalize_string

MAX = 255

# Folding is most of the cost of a string or token row, and names, cities and code displays repeat
# across resources; the cache keeps the shared function the only definition of the folded form.
fold = lru_cache(maxsize=65536)(normalize_string)

_NAME_PARTS = ("family", "given", "prefix", "suffix", "text")
_ADDRESS_PARTS = ("line", "city", "district", "state", "postalCode", "country", "text")


def _add(rows: list, value: object) -> None:
    if type(value) is str:
        folded = fold(value)
        if folded:
            rows.append((folded, value[:MAX]))
    elif type(value) is list:
        for item in value:
            _add(rows, item)


def primitive_rows(values: list) -> list[tuple]:
    rows: list = []
    for value in values:
        _add(rows, value)
    return rows


def _parts_rows(parts: tuple[str, ...]):
    def rows_of(values: list) -> list[tuple]:
        rows: list = []
        for item in values:
            if type(item) is dict:
                for part in parts:
                    value = item.get(part)
                    if value is not None:
                        _add(rows, value)
        return rows

    return rows_of


human_name_rows = _parts_rows(_NAME_PARTS)
address_rows = _parts_rows(_ADDRESS_PARTS)

CONVERTERS = {
    "string": primitive_rows,
    "uri": primitive_rows,
    "HumanName": human_name_rows,
    "Address": address_rows,
}
