"""Date index rows (https://hl7.org/fhir/R4/search.html#date): the instant range a value covers.

Row columns: (low, high), inclusive UTC instants (resources/fhirdates.py).

- date, dateTime, instant: the range of the value at its precision (`2024` is the whole year).
- Period: low from the start, high from the end, each at its precision; an open end is NULL (the
  period goes on), a missing start is NULL (https://hl7.org/fhir/R4/datatypes.html#Period).
- Timing: one row per event, and one for repeat.boundsPeriod (a schedule's overall span).
- string (the free-text form of some choices): a row only when the text is a date.
A value that does not parse gives no row: validation refuses malformed dates on write, this is
defence; free text that is no date is simply not a date.
"""

from __future__ import annotations

from ..fhirdates import parse_range


def _range(value: object):
    if type(value) is not str:
        return None
    try:
        return parse_range(value)
    except (ValueError, OverflowError):
        return None


def instant_rows(values: list) -> list[tuple]:
    rows = []
    for value in values:
        bounds = _range(value)
        if bounds is not None:
            rows.append(bounds)
    return rows


def _period_row(period: object) -> tuple | None:
    if type(period) is not dict:
        return None
    start, end = _range(period.get("start")), _range(period.get("end"))
    if start is None and end is None:
        return None
    return (start[0] if start else None, end[1] if end else None)


def period_rows(values: list) -> list[tuple]:
    rows = []
    for period in values:
        row = _period_row(period)
        if row is not None:
            rows.append(row)
    return rows


def timing_rows(values: list) -> list[tuple]:
    rows = []
    for timing in values:
        if type(timing) is not dict:
            continue
        events = timing.get("event")
        if type(events) is list:
            rows.extend(instant_rows(events))
        repeat = timing.get("repeat")
        if type(repeat) is dict:
            row = _period_row(repeat.get("boundsPeriod"))
            if row is not None:
                rows.append(row)
    return rows


CONVERTERS = {
    # The `string` form of a choice (CarePlan activity `scheduledString`, Procedure
    # `performedString`) is free text; indexed only when it is written as a date, since the
    # parameter's expression yields it and a search by that date should find it.
    "string": instant_rows,
    "date": instant_rows,
    "dateTime": instant_rows,
    "instant": instant_rows,
    "Period": period_rows,
    "Timing": timing_rows,
}
