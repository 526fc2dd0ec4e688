"""FHIR date, dateTime and instant values as instant ranges (https://hl7.org/fhir/R4/datatypes.html#dateTime).

A partial date covers its whole precision: `2024` is [2024-01-01T00:00:00, 2024-12-31T23:59:59.999999].
Values without a time zone are read as UTC (https://hl7.org/fhir/R4/search.html#date leaves the zone
of such values to the server).
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime, timedelta, timezone

_DATE_RE = re.compile(
    r"(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2})"
    r"(?:T(?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?:\.(?P<fraction>\d{1,9}))?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?"
)


# The instants a datetime can hold. A range that reaches past them (year 9999 in a zone east of
# UTC, `ap0001` widened by centuries) is cut there: nothing stored lies beyond them either.
EARLIEST = datetime.min.replace(tzinfo=UTC)
LATEST = datetime.max.replace(tzinfo=UTC)


def start_of(value: object) -> datetime | None:
    """The first instant a date/dateTime/instant value covers (aware, UTC for zone-less values), or
    None when it is no such value."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_range(value)[0]
    except ValueError:
        return None


def parse_range(value: str) -> tuple[datetime, datetime]:
    """(low, high) inclusive bounds of the instant range a date/dateTime/instant value covers.

    Raises ValueError for text that is not such a value.
    """
    match = _DATE_RE.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"'{value}' is not a FHIR date, dateTime or instant")
    parts = match.groupdict()
    tz = _zone(parts["tz"])
    year = int(parts["year"])
    if parts["month"] is None:
        low = datetime(year, 1, 1, tzinfo=tz)
        step = timedelta(days=366 if calendar.isleap(year) else 365)
    elif parts["day"] is None:
        month = int(parts["month"])
        low = datetime(year, month, 1, tzinfo=tz)
        step = timedelta(days=calendar.monthrange(year, month)[1])
    elif parts["hour"] is None:
        low = datetime(year, int(parts["month"]), int(parts["day"]), tzinfo=tz)
        step = timedelta(days=1)
    elif parts["second"] is None:
        low = datetime(
            year, int(parts["month"]), int(parts["day"]), int(parts["hour"]), int(parts["minute"]), tzinfo=tz
        )
        step = timedelta(minutes=1)
    else:
        fraction = parts["fraction"] or ""
        micro = int((fraction + "000000")[:6]) if fraction else 0
        low = datetime(
            year,
            int(parts["month"]),
            int(parts["day"]),
            int(parts["hour"]),
            int(parts["minute"]),
            int(parts["second"]),
            micro,
            tzinfo=tz,
        )
        step = timedelta(microseconds=10 ** (6 - min(len(fraction), 6))) if fraction else timedelta(seconds=1)
    start = _utc(low)
    return start, shift(start, step - timedelta(microseconds=1))


def _utc(moment: datetime) -> datetime:
    """`moment` in UTC, cut to EARLIEST/LATEST where UTC cannot hold it (0001-01-01T00:00+14:00)."""
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        return EARLIEST if moment.year == datetime.min.year else LATEST


def shift(moment: datetime, delta: timedelta) -> datetime:
    """`moment + delta`, saturating at EARLIEST/LATEST instead of raising OverflowError."""
    try:
        return moment + delta
    except OverflowError:
        return LATEST if delta > timedelta(0) else EARLIEST


def _zone(text: str | None) -> timezone:
    if text is None or text == "Z":
        return UTC
    sign = 1 if text[0] == "+" else -1
    hours, minutes = int(text[1:3]), int(text[4:6])
    if hours > 14 or minutes > 59:
        raise ValueError(f"'{text}' is not a valid time-zone offset")
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def aware(moment: datetime) -> datetime:
    """A datetime from a raw cursor as an aware UTC one (SQLite's raw cursors hand back naive UTC)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
