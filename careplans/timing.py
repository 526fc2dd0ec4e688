"""Schedule maths: the occurrences of an R4 Timing inside a window, in a patient's local time.

Implements Timing (https://hl7.org/fhir/R4/datatypes.html#Timing): `event`, `code` (through a
code -> local times mapping, https://hl7.org/fhir/R4/valueset-timing-abbreviation.html) and
`repeat` (frequency, period, periodUnit, dayOfWeek, timeOfDay, when + offset
(https://hl7.org/fhir/R4/valueset-event-timing.html), bounds[x], count, duration). Pure functions:
no database, no Django; the settings (code and meal times, default zone) come in as arguments.

Use:
    zone, notes = zone_of(careplan, timing, settings.FHIR_DEFAULT_TIMEZONE)
    schedule = occurrences(timing, window_start=now, window_end=now + horizon, anchor=plan_start,
                           zone=zone, code_times=..., when_times=...)
    for start, end in schedule.occurrences: ...    # aware UTC, [start, end)
    notes + schedule.warnings                       # OperationOutcome warnings for the write
    schedule.exhausted                              # nothing after window_end: stop extending

Choices (the spec leaves them to the server):
- Grids follow the local wall clock, sub-daily ones too: a daily 08:00 stays 08:00 local across DST,
  and "every 8 h from 07:00" is 07:00, 15:00, 23:00 local every day. Lengths (`duration`,
  `boundsDuration`) in s/min/h are elapsed time; in d/wk/mo/a they are calendar time in the zone.
- A local time in a skipped hour moves to the first instant after the gap (New York 02:30 on the
  spring-forward day is 03:00 EDT, Lord Howe 02:15 is 02:30). RFC 5545 3.3.5 instead shifts by the
  gap (03:30); moving to the gap's end keeps local order, so occurrences stay sorted and `count`
  counts them in the order a reader expects. A repeated hour is used once, at its first pass (fold=0).
- Occurrences are whole seconds (the precision of the Task identifier); two that land on the same
  instant (02:00 and 02:30 both moved to 03:00) are one occurrence.
- Monthly and yearly steps are counted from the schedule's start, never chained: monthly from the
  31st is the last day of shorter months and the 31st again after; yearly from 29 February is the
  28th in common years.
- `dayOfWeek` with a period in weeks keeps calendar weeks (Monday first) every `period` weeks from
  the start's week; with days or shorter periods it filters; with months or years it is ambiguous
  (every Monday? the first?) and is reported, not computed.
- Times of day given explicitly (`timeOfDay`, `when`, a code) win over `frequency`; a mismatch is
  reported. `frequency` > 1 without them spreads evenly over each period from the start's local
  time of day (3 per day from 07:00: 07:00, 15:00, 23:00).
- `Timing.code` (the first coding's code, whatever its system): data in `repeat` wins, the code
  fills what it lacks (BID with "2 per day" takes the configured BID times instead of spreading
  from the start's time of day); Q4H-like codes without configured times spread from the start.
- A `when` offset is counted from the meal for AC*/PC* codes and from the code's own time otherwise;
  a time pushed across midnight stays on its day.
- `count` is the total over the whole schedule: occurrences are counted from the schedule start
  whatever window is asked, so occurrence k is the same in every window. `countMax`,
  `frequencyMax`, `periodMax` and `durationMax` (beside `duration`) are reported and the lower
  bound used.
- `repeat.bounds` limits `event`s and code schedules too (R4: "bounds still applies over the code");
  the anchor does not limit events, and `count` limits the repeat rule only.
- An occurrence's window ends after `duration` when given, else at the next occurrence, capped at
  24 hours and at the bounds' end.
"""

from __future__ import annotations

import calendar
import heapq
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

TZ_CODE_URL = "http://hl7.org/fhir/StructureDefinition/tz-code"

# Local times for the R4 TimingAbbreviation codes (v3 GTSAbbreviation), "at institution specified
# times": the proposed defaults of the setting that maps codes to times. Codes listed in CODE_PERIODS
# but missing here spread from the schedule start (Q4H from a plan starting 09:00: 09:00, 13:00...).
DEFAULT_CODE_TIMES: dict[str, list[str]] = {
    "QD": ["08:00"],
    "AM": ["08:00"],
    "PM": ["14:00"],
    "BID": ["08:00", "20:00"],
    "TID": ["08:00", "14:00", "20:00"],
    "QID": ["08:00", "12:00", "16:00", "20:00"],
    "BED": ["22:00"],
    "QOD": ["08:00"],
    "WK": ["08:00"],
    "MO": ["08:00"],
}

# The period a code stands for, when it is not daily.
CODE_PERIODS: dict[str, tuple[int, str]] = {
    "QOD": (2, "d"),
    "Q1H": (1, "h"),
    "Q2H": (2, "h"),
    "Q3H": (3, "h"),
    "Q4H": (4, "h"),
    "Q6H": (6, "h"),
    "Q8H": (8, "h"),
    "WK": (1, "wk"),
    "MO": (1, "mo"),
}

# Local times of the EventTiming codes: the proposed defaults of the meal/sleep time setting.
# A "before/after meal" code without `offset` means its own time here (30 minutes from the meal, so
# that `when: [ACM, PCM]` gives two occurrences); with an `offset`, the minutes are counted from the
# meal itself, as R4 defines offset ("the number of minutes from the event").
DEFAULT_WHEN_TIMES: dict[str, str] = {
    "WAKE": "07:00",
    "PHS": "07:00",
    "MORN": "08:00",
    "MORN.early": "07:00",
    "MORN.late": "10:00",
    "NOON": "12:00",
    "AFT": "14:00",
    "AFT.early": "13:00",
    "AFT.late": "16:00",
    "EVE": "18:00",
    "EVE.early": "17:00",
    "EVE.late": "20:00",
    "NIGHT": "22:00",
    "HS": "22:00",
    "CM": "08:00",
    "ACM": "07:30",
    "PCM": "08:30",
    "ICM": "10:30",
    "CD": "12:30",
    "ACD": "12:00",
    "PCD": "13:00",
    "ICD": "15:30",
    "CV": "18:30",
    "ACV": "18:00",
    "PCV": "19:00",
    "ICV": "20:30",
}

# Codes whose offset is counted before the event (R4 Timing.repeat.offset: "If the event code does
# not indicate whether the minutes is before or after the event, then the offset is assumed to be
# after the event"): ante cibum and hora somni.
_BEFORE = frozenset({"AC", "ACM", "ACD", "ACV", "HS"})
# The event an offset is counted from, when it is not the code's own time.
_EVENT_OF = {
    "ACM": "CM",
    "PCM": "CM",
    "ACD": "CD",
    "PCD": "CD",
    "ACV": "CV",
    "PCV": "CV",
}
# Codes for "any meal" stand for the three meals.
_EXPAND = {
    "C": ("CM", "CD", "CV"),
    "AC": ("ACM", "ACD", "ACV"),
    "PC": ("PCM", "PCD", "PCV"),
    "IC": ("ICM", "ICD", "ICV"),
}

# A repeat holding none of these is only bounds (for events or nothing).
_RULE_KEYS = ("frequency", "period", "timeOfDay", "when", "dayOfWeek", "count")
_WEEKDAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}
_FIXED_UNITS = {"s": 1, "min": 60, "h": 3600}
_DAY_UNITS = {"d": 1, "wk": 7}
_MONTH_UNITS = {"mo": 1, "a": 12}
_UNITS = frozenset(_FIXED_UNITS) | frozenset(_DAY_UNITS) | frozenset(_MONTH_UNITS)

# Runaway guards: what one call returns, and how many candidate times it may look at to get there
# (a rule such as 1000 per second, or `count` far in the past, stops here with a warning).
MAX_OCCURRENCES_PER_WINDOW = 5000
MAX_SCAN = 100_000
_DEFAULT_WINDOW_CAP = timedelta(hours=24)
_SECOND = timedelta(seconds=1)
_DAY = timedelta(days=1)


class Occurrence(NamedTuple):
    """One occurrence: [start, end) as aware UTC datetimes, whole seconds."""

    start: datetime
    end: datetime


@dataclass(frozen=True)
class Schedule:
    """What `occurrences` answers.

    occurrences: sorted, distinct, start in [window_start, window_end) and inside the bounds.
    warnings: the parts of the Timing that were not computed, or computed with a stated reading.
    exhausted: True when the schedule has nothing at or after window_end (count reached, bounds
      ended, events past, or nothing computable): the caller may stop extending this activity.
    truncated: a runaway guard stopped the computation; what is missing is in the warnings.
    """

    occurrences: list[Occurrence]
    warnings: list[str] = field(default_factory=list)
    exhausted: bool = False
    truncated: bool = False


def occurrences(
    timing: dict,
    *,
    window_start: datetime,
    window_end: datetime,
    anchor: datetime,
    zone: str,
    code_times: dict[str, list[str]] | None = None,
    when_times: dict[str, str] | None = None,
    limit: int = MAX_OCCURRENCES_PER_WINDOW,
) -> Schedule:
    """The occurrences of `timing` (R4 Timing JSON) whose start lies in [window_start, window_end).

    anchor: where the schedule starts without `boundsPeriod.start`, and where `boundsDuration` counts
      from (the plan's period.start, else its creation). window_* and anchor are aware datetimes.
    zone: IANA name of the patient's zone (see `zone_of`).
    code_times / when_times: Timing.code and EventTiming codes -> local "HH:MM" times
      (defaults DEFAULT_CODE_TIMES, DEFAULT_WHEN_TIMES).
    limit: at most this many occurrences are returned (then `truncated` and a warning).
    """
    for name, value in (("window_start", window_start), ("window_end", window_end), ("anchor", anchor)):
        if value.tzinfo is None:
            raise ValueError(f"{name} must be an aware datetime")
    warnings: list[str] = []
    tz = _zone(zone)
    if tz is None:
        return Schedule([], [f"unknown time zone '{zone}': the schedule is not computed"], exhausted=True)
    if not isinstance(timing, dict):
        return Schedule([], ["Timing is not an object: nothing computed"], exhausted=True)
    try:
        plan = _Plan.compile(
            timing,
            tz=tz,
            anchor=anchor.astimezone(UTC),
            code_times=DEFAULT_CODE_TIMES if code_times is None else code_times,
            when_times=DEFAULT_WHEN_TIMES if when_times is None else when_times,
            warnings=warnings,
        )
    except OverflowError:  # an anchor at the edge of the calendar (year 1 or 9999)
        return Schedule([], [*warnings, "dates out of range: nothing computed"], exhausted=True)
    window_start, window_end = window_start.astimezone(UTC), window_end.astimezone(UTC)
    found: list[Occurrence] = []
    truncated = False
    exhausted = True
    stream = plan.instants(window_start)
    current = next(stream, None)
    while current is not None:
        following = next(stream, None)
        if current >= window_end:
            exhausted = False
            break
        if current >= window_start:
            if len(found) >= limit:
                warnings.append(
                    f"more than {limit} occurrences in the window: only the first {limit} computed"
                )
                truncated, exhausted = True, False
                break
            found.append(Occurrence(current, plan.end_of(current, following)))
        current = following
    if plan.cut:
        warnings.append(
            f"more than {MAX_SCAN} candidate times examined: occurrences after "
            f"{found[-1].start.isoformat() if found else window_start.isoformat()} not computed"
        )
        truncated, exhausted = True, False
    return Schedule(found, warnings, exhausted=exhausted, truncated=truncated)


def zone_of(careplan: dict, activity_timing: dict | None, default: str) -> tuple[str, list[str]]:
    """The IANA zone of an activity and the warnings met finding it.

    The tz-code extension (http://hl7.org/fhir/extensions/StructureDefinition-tz-code.html) on
    `Timing.repeat.boundsPeriod.start`, else on the CarePlan's `period.start`, else `default`. An
    unknown zone name in an extension is reported and the next source used; an unknown `default`
    raises ValueError (a configuration error).
    """
    warnings: list[str] = []
    repeat = (activity_timing or {}).get("repeat") if isinstance(activity_timing, dict) else None
    bounds = repeat.get("boundsPeriod") if isinstance(repeat, dict) else None
    period = careplan.get("period") if isinstance(careplan, dict) else None
    for where, holder in (
        ("Timing.repeat.boundsPeriod.start", bounds),
        ("CarePlan.period.start", period),
    ):
        code = _tz_code(holder)
        if code is None:
            continue
        if _known_zone(code):
            return code, warnings
        warnings.append(f"unknown time zone '{code}' in the tz-code extension on {where}: ignored")
    if not _known_zone(default):
        raise ValueError(f"the default time zone '{default}' is not a known IANA zone")
    return default, warnings


def _tz_code(period: object) -> str | None:
    if not isinstance(period, dict):
        return None
    primitive = period.get("_start")
    if not isinstance(primitive, dict):
        return None
    for extension in primitive.get("extension") or ():
        if isinstance(extension, dict) and extension.get("url") == TZ_CODE_URL:
            code = extension.get("valueCode")
            return code if isinstance(code, str) else ""
    return None


def _known_zone(name: str) -> bool:
    return _zone(name) is not None


def _zone(name: object) -> ZoneInfo | None:
    """The zone named `name`, None for anything else ('America' is a directory of the tz database,
    a long name is an OSError: client text is never trusted to be a zone)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):
        return None


# -- local wall clock <-> UTC ---------------------------------------------------------------------


def to_utc(local: datetime, tz: tzinfo) -> datetime:
    """The UTC instant of naive local time `local` in `tz`, whole seconds.

    A repeated local time is its first pass (fold=0); a skipped one moves to the end of the gap.
    """
    if local.microsecond:
        local = local.replace(microsecond=0)
    moment = local.replace(tzinfo=tz).astimezone(UTC)
    back = moment.astimezone(tz)
    # Read back on the wall clock: only a time in a gap reads differently (later by the gap, which
    # is less than a month). Field by field, as building a naive copy costs more than the rest.
    if back.second == local.second and back.minute == local.minute and back.hour == local.hour:
        if back.day == local.day:
            return moment
    # In a gap: fold=1 reads it with the offset after the change, which lands before the change;
    # fold=0 with the offset before, after it. The change is the first instant whose clock reads
    # past `local`; transitions are whole seconds, so bisect seconds.
    low = local.replace(tzinfo=tz, fold=1).astimezone(UTC)
    high = moment
    if low > high:
        low, high = high, low
    while high - low > _SECOND:
        middle = low + timedelta(seconds=(high - low).total_seconds() // 2)
        if middle.astimezone(tz).replace(tzinfo=None) > local:
            high = middle
        else:
            low = middle
    return high


def _local(moment: datetime, tz: tzinfo) -> datetime:
    return moment.astimezone(tz).replace(tzinfo=None, fold=0)


def _add_months(moment: datetime, months: int) -> datetime:
    """`moment` plus whole months, the day cut to the month's last day (31 Jan + 1 = 28/29 Feb)."""
    index = moment.year * 12 + moment.month - 1 + months
    year, month = divmod(index, 12)
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


def _add_length(start: datetime, value: Decimal, unit: str, tz: tzinfo) -> datetime:
    """`start` (UTC) plus a Duration: elapsed for s/min/h, calendar time in `tz` for d/wk/mo/a."""
    if unit in _FIXED_UNITS:
        return start + timedelta(seconds=float(value * _FIXED_UNITS[unit]))
    local = _local(start, tz)
    if unit in _DAY_UNITS:
        return to_utc(local + timedelta(days=float(value * _DAY_UNITS[unit])), tz)
    months = value * _MONTH_UNITS[unit]
    if months != int(months):
        raise ValueError(f"a length of {value} {unit} is not a whole number of months")
    return to_utc(_add_months(local, int(months)), tz)


# -- FHIR values ----------------------------------------------------------------------------------

_DATETIME_RE = re.compile(
    r"(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2})"
    r"(?:T(?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?:\.(?P<fraction>\d+))?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?"
)
_TIME_RE = re.compile(r"(?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?:\.\d+)?)?")


class _When(NamedTuple):
    """A parsed FHIR dateTime: the local wall-clock time it names, its UTC instant, the first UTC
    instant after it (its precision: `2024-03-01` runs to the next local midnight), and whether it
    has a time of day."""

    local: datetime
    start: datetime
    after: datetime
    has_time: bool


def _parse_datetime(text: object, tz: tzinfo) -> _When:
    """A date/dateTime/instant; without an offset it is read in the patient's zone."""
    if not isinstance(text, str):
        raise ValueError(f"'{text}' is not a FHIR dateTime")
    return _parse_datetime_text(text, tz)


# Plans share their few dates and times: parsing each once per process is a third of a call's cost.
# Pure (zones are immutable), bounded, thread-safe.
@lru_cache(maxsize=4096)
def _parse_datetime_text(text: str, tz: tzinfo) -> _When:
    match = _DATETIME_RE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"'{text}' is not a FHIR dateTime")
    part = match.groupdict()
    year, month, day = int(part["year"]), int(part["month"] or 1), int(part["day"] or 1)
    if part["hour"] is None:
        local = datetime(year, month, day)
        if part["month"] is None:
            following = local.replace(year=year + 1)
        elif part["day"] is None:
            following = _add_months(local, 1)
        else:
            following = local + _DAY
        return _When(local, to_utc(local, tz), to_utc(following, tz), False)
    second = int(part["second"] or 0)
    named = datetime(year, month, day, int(part["hour"]), int(part["minute"]), second)
    step = _SECOND if part["second"] is not None else timedelta(minutes=1)
    if part["tz"] is None:
        start = to_utc(named, tz)
        return _When(named, start, start + step, True)
    offset = timedelta(0) if part["tz"] == "Z" else _offset(part["tz"])
    start = (named - offset).replace(tzinfo=UTC)
    return _When(_local(start, tz), start, start + step, True)


def _offset(text: str) -> timedelta:
    sign = 1 if text[0] == "+" else -1
    return sign * timedelta(hours=int(text[1:3]), minutes=int(text[4:6]))


def _parse_time(text: object) -> timedelta:
    if not isinstance(text, str):
        raise ValueError(f"'{text}' is not a time of day (HH:MM or HH:MM:SS)")
    return _parse_time_text(text)


@lru_cache(maxsize=1024)
def _parse_time_text(text: str) -> timedelta:
    match = _TIME_RE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"'{text}' is not a time of day (HH:MM or HH:MM:SS)")
    hour, minute, second = int(match["hour"]), int(match["minute"]), int(match["second"] or 0)
    time(hour, minute, second)  # range check
    return timedelta(hours=hour, minutes=minute, seconds=second)


def _as_list(value: object) -> list:
    """A repeating element's values (a lone value read as a list of one; absent as none)."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _is_unit(unit: object) -> bool:
    return isinstance(unit, str) and unit in _UNITS


def _decimal(value: object) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _positive_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _duration(quantity: object, what: str, warnings: list[str]) -> tuple[Decimal, str] | None:
    """A Duration/Quantity as (value, UCUM unit), or None with a warning."""
    if not isinstance(quantity, dict):
        warnings.append(f"{what} is not a Duration: ignored")
        return None
    value = _decimal(quantity.get("value"))
    unit = quantity.get("code") or quantity.get("unit")
    if value is None or value < 0 or not _is_unit(unit):
        warnings.append(f"{what} needs a value and a unit among s, min, h, d, wk, mo, a: ignored")
        return None
    return value, unit


# -- the plan -------------------------------------------------------------------------------------


@dataclass
class _Plan:
    """A compiled Timing: the repeat rule's candidate local times, the events, the bounds."""

    tz: tzinfo
    start: datetime | None = None  # the rule's start (UTC): bounds start, else the anchor
    bounds_start: datetime | None = None  # boundsPeriod.start only: what limits events
    end: datetime | None = None  # bounds end (UTC), exclusive
    count: int | None = None
    candidates: Callable[[datetime | None], Iterator[datetime]] | None = None
    weekdays: frozenset[int] | None = None
    events: list[datetime] = field(default_factory=list)
    length: tuple[Decimal, str] | None = None
    cut: bool = False

    @classmethod
    def compile(
        cls,
        timing: dict,
        *,
        tz: tzinfo,
        anchor: datetime,
        code_times: dict[str, list[str]],
        when_times: dict[str, str],
        warnings: list[str],
    ) -> _Plan:
        plan = cls(tz=tz)
        repeat = timing.get("repeat")
        if repeat is not None and not isinstance(repeat, dict):
            warnings.append("Timing.repeat is not an object: ignored")
            repeat = None
        repeat = dict(repeat or {})
        origin = plan._bounds(repeat, anchor, warnings)
        plan._length(repeat, warnings)
        # R4: the code states the whole schedule and "either the code or the data may be used".
        # Data given wins; the code fills what it lacks (BID with frequency 2 per day takes the
        # institution's BID times rather than spreading from midnight).
        code = _code(timing.get("code"))
        structured = any(key in repeat for key in ("period", "timeOfDay", "when", "frequency"))
        if code is not None and (code in code_times or code in CODE_PERIODS):
            if "period" not in repeat:
                period, unit = CODE_PERIODS.get(code, (1, "d"))
                repeat.update(period=period, periodUnit=unit)
            if code in code_times and not repeat.get("timeOfDay") and not repeat.get("when"):
                repeat["timeOfDay"] = _as_list(code_times[code])
        elif code is not None and not structured:
            warnings.append(f"Timing.code '{code}' has no times configured: not computed")
        if "event" in timing:
            plan._events(timing["event"], warnings)
        if origin is None:
            pass  # the bounds are unusable, and reported
        elif any(key in repeat for key in _RULE_KEYS):
            plan._rule(repeat, origin, when_times, warnings)
        elif "event" not in timing and (code is None or structured):
            warnings.append("Timing has no event, code, period or times of day: nothing computed")
        return plan

    # bounds[x]: the schedule's start (also where spreading starts) and end.
    def _bounds(self, repeat: dict, anchor: datetime, warnings: list[str]) -> datetime | None:
        """Sets start/end; answers the local wall-clock start of the rule, None when unusable."""
        origin = _local(anchor, self.tz).replace(microsecond=0)
        self.start = anchor.replace(microsecond=0)
        if "boundsPeriod" in repeat:
            period = repeat["boundsPeriod"]
            if not isinstance(period, dict):
                warnings.append("Timing.repeat.boundsPeriod is not a Period: nothing computed")
                return None
            try:
                if period.get("start") is not None:
                    begin = _parse_datetime(period["start"], self.tz)
                    origin, self.start, self.bounds_start = begin.local, begin.start, begin.start
                if period.get("end") is not None:
                    # R4 Period.end includes the whole of its precision (an end of 2024-03-01 runs
                    # through that day).
                    self.end = _parse_datetime(period["end"], self.tz).after
            except (ValueError, OverflowError) as error:
                warnings.append(f"Timing.repeat.boundsPeriod: {error}: nothing computed")
                return None
            if self.end is not None and self.end <= self.start:
                warnings.append("Timing.repeat.boundsPeriod ends before it starts: nothing computed")
                return None
        elif "boundsDuration" in repeat:
            length = _duration(repeat["boundsDuration"], "Timing.repeat.boundsDuration", warnings)
            if length is None:
                return None
            self.end = self._plus(self.start, length, "Timing.repeat.boundsDuration", warnings)
        elif "boundsRange" in repeat:
            bounds = repeat["boundsRange"] if isinstance(repeat["boundsRange"], dict) else {}
            low = bounds.get("low")
            if low is None:
                warnings.append("Timing.repeat.boundsRange without a low value: not computed")
                return None
            if bounds.get("high") is not None:
                warnings.append("Timing.repeat.boundsRange.high not used: the schedule lasts boundsRange.low")
            length = _duration(low, "Timing.repeat.boundsRange.low", warnings)
            if length is None:
                return None
            self.end = self._plus(self.start, length, "Timing.repeat.boundsRange.low", warnings)
        return origin

    def _plus(self, start: datetime, length: tuple[Decimal, str], what: str, warnings: list[str]):
        try:
            return _add_length(start, *length, self.tz)
        except (ValueError, OverflowError) as error:
            warnings.append(f"{what}: {error}: the schedule has no end")
            return None

    def _length(self, repeat: dict, warnings: list[str]) -> None:
        if "duration" in repeat or "durationMax" in repeat:
            key = "duration" if "duration" in repeat else "durationMax"
            value = _decimal(repeat.get(key))
            unit = repeat.get("durationUnit")
            if value is None or value <= 0 or not _is_unit(unit):
                warnings.append(
                    f"Timing.repeat.{key} needs a positive value and a durationUnit: windows end at the next occurrence"
                )
            else:
                self.length = (value, unit)
                if key == "duration" and "durationMax" in repeat:
                    warnings.append("Timing.repeat.durationMax not used: windows last repeat.duration")

    def _events(self, events: object, warnings: list[str]) -> None:
        found = set()
        for position, text in enumerate(events if isinstance(events, list) else [events]):
            try:
                when = _parse_datetime(text, self.tz)
            except (ValueError, OverflowError) as error:
                warnings.append(f"Timing.event[{position}]: {error}: not computed")
                continue
            if not when.has_time and (when.after - when.start) > timedelta(hours=26):
                warnings.append(f"Timing.event[{position}] '{text}' is not a day or a time: not computed")
                continue
            if self._inside(when.start):
                found.add(when.start)
        self.events = sorted(found)

    def _inside(self, moment: datetime) -> bool:
        return (self.bounds_start is None or moment >= self.bounds_start) and (
            self.end is None or moment < self.end
        )

    def _rule(self, repeat: dict, origin: datetime, when_times: dict[str, str], warnings: list[str]) -> None:
        """Compiles repeat into `candidates`: local times in order, from a hint (see instants)."""
        if "countMax" in repeat:
            warnings.append("Timing.repeat.countMax not used: repeat.count is taken as the total")
        if "count" in repeat:
            self.count = _positive_int(repeat["count"])
            if self.count is None:
                warnings.append("Timing.repeat.count is not a positive integer: the repeat is not computed")
                return
        frequency = 1
        if "frequency" in repeat:
            frequency = _positive_int(repeat["frequency"])
            if frequency is None:
                warnings.append(
                    "Timing.repeat.frequency is not a positive integer: the repeat is not computed"
                )
                return
        if "frequencyMax" in repeat:
            warnings.append(
                f"Timing.repeat.frequencyMax not used: the lower bound frequency {frequency} is used"
            )
        if "periodMax" in repeat:
            warnings.append("Timing.repeat.periodMax not used: the lower bound repeat.period is used")
        times = self._times(repeat, when_times, warnings)
        if times is None:
            return
        weekdays = None
        if "dayOfWeek" in repeat:
            names = _as_list(repeat["dayOfWeek"])
            unknown = [name for name in names if not isinstance(name, str) or name not in _WEEKDAYS]
            if unknown or not names:
                warnings.append(
                    f"Timing.repeat.dayOfWeek {unknown or names} unknown: the repeat is not computed"
                )
                return
            weekdays = frozenset(_WEEKDAYS[name] for name in names)

        if "period" in repeat:
            period = _decimal(repeat["period"])
            unit = repeat.get("periodUnit")
            if period is None or period <= 0:
                warnings.append("Timing.repeat.period is not a positive number: the repeat is not computed")
                return
            if not _is_unit(unit):
                warnings.append(f"Timing.repeat.periodUnit '{unit}' unknown: the repeat is not computed")
                return
        elif times or weekdays is not None:
            period, unit = Decimal(1), "d"
        elif self.count == 1:
            self.candidates = lambda hint: iter((origin,))
            return
        else:
            warnings.append(
                "Timing.repeat has no period, times of day or days of week: the repeat is not computed"
            )
            return

        if unit in _MONTH_UNITS:
            if weekdays is not None:
                warnings.append(
                    "Timing.repeat.dayOfWeek with a period in months or years is ambiguous: the repeat is not computed"
                )
                return
            if period != int(period):
                warnings.append(
                    f"a period of {period} {unit} is not whole months: the repeat is not computed"
                )
                return
            self.candidates = _monthly(origin, int(period) * _MONTH_UNITS[unit], frequency, times)
            return
        if times:
            whole_days = unit in _DAY_UNITS and period == int(period)
            if not whole_days:
                per_day = Decimal(86400) / (period * _FIXED_UNITS.get(unit, 86400 * _DAY_UNITS.get(unit, 1)))
                if per_day * frequency != len(times):
                    warnings.append(
                        f"a period of {period} {unit} with times of day: the times of day are used, every day"
                    )
                period, unit = Decimal(1), "d"
            elif frequency > 1 and frequency != len(times) * (
                len(weekdays) if weekdays is not None and unit == "wk" else 1
            ):
                warnings.append(
                    f"Timing.repeat.frequency {frequency} does not match the times of day: the times of day are used"
                )
        if unit == "wk" and weekdays is not None and period == int(period):
            if not times:
                if frequency > len(weekdays):
                    warnings.append(
                        f"Timing.repeat.frequency {frequency} per week over {len(weekdays)} days of week: "
                        "one occurrence per listed day, at the start's time of day"
                    )
                times = [_time_of(origin)]
            self.candidates = _weekly(origin, int(period), sorted(weekdays), times)
            return
        self.weekdays = weekdays
        if times:
            self.candidates = _daily(origin, int(period) * _DAY_UNITS[unit], times)
            return
        seconds = period * (_FIXED_UNITS[unit] if unit in _FIXED_UNITS else 86400 * _DAY_UNITS[unit])
        if seconds < frequency:
            # Task identifiers are to the second: such occurrences cannot be told apart.
            warnings.append("Timing.repeat asks for more than one occurrence per second: not computed")
            return
        self.candidates = _grid(origin, int(seconds * 1_000_000), frequency)

    def _times(self, repeat: dict, when_times: dict[str, str], warnings: list[str]) -> list[timedelta] | None:
        """Times of day (from local midnight, within the day) of timeOfDay and when; None: unusable."""
        found: set[timedelta] = set()
        for text in _as_list(repeat.get("timeOfDay")):
            try:
                found.add(_parse_time(text))
            except ValueError as error:
                warnings.append(f"Timing.repeat.timeOfDay: {error}: ignored")
        codes = _as_list(repeat.get("when"))
        offset = repeat.get("offset")
        if offset is not None and (not isinstance(offset, int) or isinstance(offset, bool) or offset < 0):
            warnings.append("Timing.repeat.offset is not an unsignedInt: the repeat is not computed")
            return None
        if offset and not codes:
            warnings.append("Timing.repeat.offset without repeat.when: ignored")
        for code in codes:
            if not isinstance(code, str):
                warnings.append(f"Timing.repeat.when {code!r} is not a code: not computed")
                continue
            for each in (code,) if code in when_times else _EXPAND.get(code, (code,)):
                moment = _when_time(each, offset or 0, when_times)
                if moment is None:
                    warnings.append(f"Timing.repeat.when '{each}' has no time configured: not computed")
                else:
                    found.add(moment)
        if not found and (repeat.get("timeOfDay") or codes):
            warnings.append(
                "Timing.repeat: none of its times of day could be read: the repeat is not computed"
            )
            return None
        return sorted(found)

    def end_of(self, start: datetime, following: datetime | None) -> datetime:
        """The end of the occurrence window starting at `start`."""
        if self.length is not None:
            try:
                return _add_length(start, *self.length, self.tz)
            except (ValueError, OverflowError):
                pass
        try:
            end = start + _DEFAULT_WINDOW_CAP
        except OverflowError:
            end = datetime.max.replace(tzinfo=UTC)
        if following is not None and following < end:
            end = following
        if self.end is not None and self.end < end:
            end = self.end
        return end

    def instants(self, window_start: datetime) -> Iterator[datetime]:
        """All occurrence starts (UTC), sorted and distinct, from the first one that may be in a
        window starting at window_start (from the schedule start when `count` needs counting)."""
        rule = self._rule_instants(window_start) if self.candidates is not None else iter(())
        if not self.events:
            yield from rule  # already distinct
            return
        previous = None
        for moment in heapq.merge(rule, self.events):
            if moment != previous:
                previous = moment
                yield moment

    def _rule_instants(self, window_start: datetime) -> Iterator[datetime]:
        # Without count, skip to the window: every candidate before the local time of the second
        # before the window maps before the window (local -> UTC is monotonic), so starting there
        # loses nothing. With count, occurrence k needs the k-1 before it.
        hint = None if self.count is not None else _local(window_start - _SECOND, self.tz)
        tz, start, end, count, weekdays = self.tz, self.start, self.end, self.count, self.weekdays
        previous = None
        produced = 0
        candidates = self.candidates(hint)
        try:
            for scanned, local in enumerate(candidates):
                if scanned >= MAX_SCAN:
                    self.cut = True
                    return
                if weekdays is not None and local.weekday() not in weekdays:
                    continue
                moment = to_utc(local, tz)
                if moment < start or moment == previous:
                    continue
                if end is not None and moment >= end:
                    return
                previous = moment
                yield moment
                produced += 1
                if count is not None and produced >= count:
                    return

        except (OverflowError, ValueError):
            return  # past year 9999: the schedule has nothing more to give


def _code(concept: object) -> str | None:
    if not isinstance(concept, dict):
        return None
    for coding in concept.get("coding") or ():
        if isinstance(coding, dict) and isinstance(coding.get("code"), str):
            return coding["code"]
    return None


def _when_time(code: str, offset: int, when_times: dict[str, str]) -> timedelta | None:
    base = _EVENT_OF.get(code) if offset else None
    text = when_times.get(base) if base in when_times else when_times.get(code)
    if text is None:
        return None
    try:
        moment = _parse_time(text)
    except ValueError:
        return None
    shift = timedelta(minutes=offset)
    # An offset that crosses midnight stays on the same local day (HS at 00:30 minus 60 is 23:30).
    return (moment - shift if code in _BEFORE else moment + shift) % _DAY


def _time_of(moment: datetime) -> timedelta:
    return moment - datetime.combine(moment.date(), time())


# -- candidate generators: naive local times in non-decreasing order ------------------------------
# Each takes a hint (a local time; None = from the start) and skips the periods whose candidates all
# lie before it: the caller needs nothing before the hint.


def _grid(
    origin: datetime, period_us: int, frequency: int
) -> Callable[[datetime | None], Iterator[datetime]]:
    """`frequency` times per period spread evenly from origin, on the wall clock."""

    def generate(hint: datetime | None) -> Iterator[datetime]:
        step = 0
        if hint is not None and hint > origin:
            elapsed = (hint - origin) // timedelta(microseconds=1)
            step = elapsed * frequency // period_us  # the last candidate at or before the hint
        while True:
            yield origin + timedelta(microseconds=step * period_us // frequency)
            step += 1

    return generate


def _days(hint: datetime | None, every: int, first: date) -> int:
    """The first period (of `every` days from `first`) worth generating for `hint`."""
    if hint is None or hint.date() <= first:
        return 0
    return (hint.date() - first).days // every  # earlier periods end before the hint's day


def _daily(
    origin: datetime, every: int, times: list[timedelta]
) -> Callable[[datetime | None], Iterator[datetime]]:
    """The times of day on every `every`-th day from origin's day."""

    def generate(hint: datetime | None) -> Iterator[datetime]:
        midnight = datetime.combine(origin.date(), time())
        step = _days(hint, every, origin.date())
        while True:
            day = midnight + timedelta(days=step * every)
            for moment in times:
                yield day + moment
            step += 1

    return generate


def _weekly(
    origin: datetime, every: int, weekdays: list[int], times: list[timedelta]
) -> Callable[[datetime | None], Iterator[datetime]]:
    """The times of day on the listed weekdays of every `every`-th calendar week from origin's."""

    def generate(hint: datetime | None) -> Iterator[datetime]:
        monday = datetime.combine(origin.date() - timedelta(days=origin.weekday()), time())
        step = _days(hint, 7 * every, monday.date())
        while True:
            week = monday + timedelta(days=7 * every * step)
            for weekday in weekdays:
                for moment in times:
                    yield week + timedelta(days=weekday) + moment
            step += 1

    return generate


def _monthly(
    origin: datetime, every: int, frequency: int, times: list[timedelta]
) -> Callable[[datetime | None], Iterator[datetime]]:
    """Every `every` months from origin (day cut to the month's end): the times of day on that day,
    or `frequency` times spread evenly over the period."""

    def generate(hint: datetime | None) -> Iterator[datetime]:
        step = 0
        if hint is not None and hint > origin:
            months = (hint.year - origin.year) * 12 + hint.month - origin.month
            step = max(0, months // every - 1)
        while True:
            begin = _add_months(origin, step * every)
            if times:
                midnight = datetime.combine(begin.date(), time())
                for moment in times:
                    yield midnight + moment
            else:
                span = _add_months(origin, (step + 1) * every) - begin
                for index in range(frequency):
                    yield begin + span * index / frequency
            step += 1

    return generate
