"""Schedule maths (careplans/timing.py): explicit cases for the choices it documents, and properties
that hold for every Timing (https://hl7.org/fhir/R4/datatypes.html#Timing): occurrences sorted,
distinct, inside window and bounds, the same whichever windows ask for them, in local wall-clock
time across DST."""

from __future__ import annotations

import time as clock
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from careplans.timing import (
    DEFAULT_CODE_TIMES,
    DEFAULT_WHEN_TIMES,
    MAX_SCAN,
    TZ_CODE_URL,
    occurrences,
    to_utc,
    zone_of,
)

ZONES = [
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "America/Sao_Paulo",
    "UTC",
    "Asia/Kolkata",
]


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def run(timing, start, end, *, zone="UTC", anchor=None, **extra):
    return occurrences(
        timing,
        window_start=start,
        window_end=end,
        anchor=anchor or start,
        zone=zone,
        code_times=DEFAULT_CODE_TIMES,
        when_times=DEFAULT_WHEN_TIMES,
        **extra,
    )


def local_starts(schedule, zone):
    return [o.start.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M") for o in schedule.occurrences]


def daily(*times, **repeat):
    return {
        "repeat": {
            "frequency": len(times),
            "period": 1,
            "periodUnit": "d",
            "timeOfDay": list(times),
            **repeat,
        }
    }


# -- DST -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "zone, start, end",
    [
        ("Europe/Berlin", utc(2024, 3, 28), utc(2024, 4, 3)),  # spring forward 31 March
        ("Europe/Berlin", utc(2024, 10, 24), utc(2024, 10, 30)),  # fall back 27 October
        ("America/New_York", utc(2024, 3, 8), utc(2024, 3, 14)),
        ("America/New_York", utc(2024, 11, 1), utc(2024, 11, 6)),
        ("Australia/Lord_Howe", utc(2024, 4, 3), utc(2024, 4, 10)),  # back 30 minutes, 7 April
        ("Australia/Lord_Howe", utc(2024, 10, 3), utc(2024, 10, 9)),  # forward 30 minutes, 6 October
        ("America/Sao_Paulo", utc(2018, 11, 1), utc(2018, 11, 7)),  # forward at midnight, 4 Nov 2018
        ("America/Sao_Paulo", utc(2019, 2, 14), utc(2019, 2, 20)),  # back at midnight, 17 Feb 2019
    ],
)
def test_daily_times_keep_their_local_time_across_dst(zone, start, end):
    schedule = run(daily("08:00:00", "20:30:00"), start, end, zone=zone, anchor=utc(2018, 1, 1))
    times = {o.start.astimezone(ZoneInfo(zone)).strftime("%H:%M") for o in schedule.occurrences}
    assert times == {"08:00", "20:30"}
    assert len(schedule.occurrences) >= 2 * ((end - start).days - 1)
    assert schedule.warnings == []


@pytest.mark.parametrize(
    "zone, local, expected",
    [
        # The skipped hour moves to the end of the gap (not RFC 5545's 03:30).
        ("America/New_York", datetime(2024, 3, 10, 2, 30), "2024-03-10T03:00:00-04:00"),
        ("Europe/Berlin", datetime(2024, 3, 31, 2, 30), "2024-03-31T03:00:00+02:00"),
        ("Australia/Lord_Howe", datetime(2024, 10, 6, 2, 15), "2024-10-06T02:30:00+11:00"),
        ("America/Sao_Paulo", datetime(2018, 11, 4, 0, 30), "2018-11-04T01:00:00-02:00"),
        # A repeated hour is its first pass.
        ("America/New_York", datetime(2024, 11, 3, 1, 30), "2024-11-03T01:30:00-04:00"),
        ("Australia/Lord_Howe", datetime(2024, 4, 7, 1, 45), "2024-04-07T01:45:00+11:00"),
        ("America/Sao_Paulo", datetime(2019, 2, 16, 23, 30), "2019-02-16T23:30:00-02:00"),
    ],
)
def test_to_utc_skipped_and_repeated_times(zone, local, expected):
    assert to_utc(local, ZoneInfo(zone)).astimezone(ZoneInfo(zone)).isoformat() == expected


def test_a_daily_dose_in_the_skipped_hour_moves_forward_that_day_only():
    schedule = run(daily("02:30:00"), utc(2024, 3, 9), utc(2024, 3, 12), zone="America/New_York")
    assert local_starts(schedule, "America/New_York") == [
        "2024-03-09 02:30",
        "2024-03-10 03:00",
        "2024-03-11 02:30",
    ]


def test_hourly_on_the_switch_days_uses_each_instant_once():
    hourly = {
        "repeat": {"frequency": 1, "period": 1, "periodUnit": "h", "boundsPeriod": {"start": "2024-01-01"}}
    }
    zone = ZoneInfo("America/New_York")
    spring = run(hourly, utc(2024, 3, 10, 5), utc(2024, 3, 11, 4), zone="America/New_York")  # the local day
    assert len(spring.occurrences) == 23  # 02:00 moved to 03:00 is the 03:00 occurrence
    fall = run(hourly, utc(2024, 11, 3, 4), utc(2024, 11, 4, 5), zone="America/New_York")
    assert len(fall.occurrences) == 24  # 25 real hours; the wall clock shows 01:00 twice, used once
    hours = [o.start.astimezone(zone).hour for o in fall.occurrences]
    assert hours == list(range(24))
    gap = fall.occurrences[1].end - fall.occurrences[1].start
    assert gap == timedelta(hours=2)  # 01:00 EDT runs to 02:00 EST


def test_every_eight_hours_follows_the_wall_clock_like_three_a_day():
    eight = {
        "repeat": {
            "frequency": 1,
            "period": 8,
            "periodUnit": "h",
            "boundsPeriod": {"start": "2024-03-29T07:00:00"},
        }
    }
    three = {
        "repeat": {
            "frequency": 3,
            "period": 1,
            "periodUnit": "d",
            "boundsPeriod": {"start": "2024-03-29T07:00:00"},
        }
    }
    a = run(eight, utc(2024, 3, 29), utc(2024, 4, 2), zone="Europe/Berlin")
    b = run(three, utc(2024, 3, 29), utc(2024, 4, 2), zone="Europe/Berlin")
    assert a.occurrences == b.occurrences
    assert local_starts(b, "Europe/Berlin")[:6] == [
        "2024-03-29 07:00",
        "2024-03-29 15:00",
        "2024-03-29 23:00",
        "2024-03-30 07:00",
        "2024-03-30 15:00",
        "2024-03-30 23:00",
    ]
    assert local_starts(b, "Europe/Berlin")[6:9] == [
        "2024-03-31 07:00",
        "2024-03-31 15:00",
        "2024-03-31 23:00",
    ]


def test_a_date_only_start_in_a_midnight_gap():
    # Sao Paulo skipped 2018-11-04 00:00-01:00: the day starts at 01:00, the 00:30 dose is at 01:00.
    schedule = run(
        daily("00:30:00", "12:00:00", boundsPeriod={"start": "2018-11-04"}),
        utc(2018, 11, 1),
        utc(2018, 11, 6),
        zone="America/Sao_Paulo",
    )
    assert local_starts(schedule, "America/Sao_Paulo") == [
        "2018-11-04 01:00",
        "2018-11-04 12:00",
        "2018-11-05 00:30",
        "2018-11-05 12:00",
    ]


# -- calendar ------------------------------------------------------------------------------------


def test_monthly_from_the_31st_is_the_last_day_of_shorter_months():
    monthly = {
        "repeat": {
            "frequency": 1,
            "period": 1,
            "periodUnit": "mo",
            "boundsPeriod": {"start": "2024-01-31T09:00:00"},
        }
    }
    schedule = run(monthly, utc(2024, 1, 1), utc(2024, 7, 1), zone="Europe/Berlin")
    assert local_starts(schedule, "Europe/Berlin") == [
        "2024-01-31 09:00",
        "2024-02-29 09:00",
        "2024-03-31 09:00",
        "2024-04-30 09:00",
        "2024-05-31 09:00",
        "2024-06-30 09:00",
    ]


def test_yearly_from_a_leap_day():
    yearly = {
        "repeat": {
            "frequency": 1,
            "period": 1,
            "periodUnit": "a",
            "boundsPeriod": {"start": "2024-02-29T10:00:00Z"},
        }
    }
    schedule = run(yearly, utc(2024, 1, 1), utc(2029, 1, 1))
    assert local_starts(schedule, "UTC") == [
        "2024-02-29 10:00",
        "2025-02-28 10:00",
        "2026-02-28 10:00",
        "2027-02-28 10:00",
        "2028-02-29 10:00",
    ]


def test_daily_through_a_leap_day_and_a_date_only_end_includes_that_day():
    schedule = run(
        daily("09:00:00", boundsPeriod={"start": "2024-02-27", "end": "2024-03-01"}),
        utc(2024, 1, 1),
        utc(2025, 1, 1),
    )
    assert local_starts(schedule, "UTC") == [
        "2024-02-27 09:00",
        "2024-02-28 09:00",
        "2024-02-29 09:00",
        "2024-03-01 09:00",
    ]
    assert schedule.exhausted
    assert schedule.occurrences[-1].end == utc(2024, 3, 2)  # 24 hours, within the bounds' end


def test_day_of_week_times_time_of_day():
    timing = {
        "repeat": {
            "frequency": 4,
            "period": 1,
            "periodUnit": "wk",
            "dayOfWeek": ["wed", "mon"],
            "timeOfDay": ["18:00:00", "09:00:00"],
        }
    }
    schedule = run(timing, utc(2024, 1, 1), utc(2024, 1, 15), zone="Europe/Berlin")  # Monday 1 Jan 2024
    assert local_starts(schedule, "Europe/Berlin") == [
        "2024-01-01 09:00",
        "2024-01-01 18:00",
        "2024-01-03 09:00",
        "2024-01-03 18:00",
        "2024-01-08 09:00",
        "2024-01-08 18:00",
        "2024-01-10 09:00",
        "2024-01-10 18:00",
    ]
    assert schedule.warnings == []


def test_every_other_calendar_week():
    timing = {
        "repeat": {
            "frequency": 2,
            "period": 2,
            "periodUnit": "wk",
            "dayOfWeek": ["mon", "fri"],
            "boundsPeriod": {"start": "2024-01-03T08:00:00Z"},  # a Wednesday
        }
    }
    schedule = run(timing, utc(2024, 1, 1), utc(2024, 2, 1))
    assert local_starts(schedule, "UTC") == [
        "2024-01-05 08:00",
        "2024-01-15 08:00",
        "2024-01-19 08:00",
        "2024-01-29 08:00",
    ]


def test_day_of_week_filters_a_daily_rule():
    timing = {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d", "dayOfWeek": ["sat"]}}
    schedule = run(timing, utc(2024, 1, 1), utc(2024, 1, 15), anchor=utc(2023, 12, 1, 7))
    assert local_starts(schedule, "UTC") == [
        "2024-01-06 07:00",
        "2024-01-06 19:00",
        "2024-01-13 07:00",
        "2024-01-13 19:00",
    ]


def test_day_of_week_with_months_is_reported():
    timing = {"repeat": {"frequency": 1, "period": 1, "periodUnit": "mo", "dayOfWeek": ["mon"]}}
    schedule = run(timing, utc(2024, 1, 1), utc(2024, 3, 1))
    assert schedule.occurrences == []
    assert "ambiguous" in schedule.warnings[0]


# -- count and bounds ----------------------------------------------------------------------------


def test_count_is_the_total_over_all_windows():
    timing = daily("08:00:00", "20:00:00", count=5, boundsPeriod={"start": "2024-01-01T12:00:00Z"})
    first = run(timing, utc(2024, 1, 1), utc(2024, 1, 2, 12))
    second = run(timing, utc(2024, 1, 2, 12), utc(2024, 2, 1))
    assert local_starts(first, "UTC") == ["2024-01-01 20:00", "2024-01-02 08:00"]
    assert not first.exhausted
    assert local_starts(second, "UTC") == ["2024-01-02 20:00", "2024-01-03 08:00", "2024-01-03 20:00"]
    assert second.exhausted
    assert run(timing, utc(2024, 3, 1), utc(2024, 3, 2)).occurrences == []


def test_bounds_end_before_count():
    timing = daily("08:00:00", count=10, boundsPeriod={"start": "2024-01-01", "end": "2024-01-03"})
    assert len(run(timing, utc(2023, 1, 1), utc(2025, 1, 1)).occurrences) == 3


def test_bounds_duration_counts_from_the_anchor():
    timing = {
        "repeat": {
            "frequency": 1,
            "period": 1,
            "periodUnit": "d",
            "boundsDuration": {"value": 3, "code": "d"},
        }
    }
    schedule = run(timing, utc(2024, 1, 1), utc(2024, 2, 1), anchor=utc(2024, 1, 10, 9, 15))
    assert local_starts(schedule, "UTC") == ["2024-01-10 09:15", "2024-01-11 09:15", "2024-01-12 09:15"]
    assert schedule.exhausted


def test_max_bounds_are_reported_and_the_lower_used():
    timing = daily("08:00:00", count=2, countMax=4, frequencyMax=3, periodMax=2)
    schedule = run(timing, utc(2024, 1, 1), utc(2024, 1, 10))
    assert len(schedule.occurrences) == 2
    assert len(schedule.warnings) == 3


# -- when, code, event ---------------------------------------------------------------------------


def test_when_with_offset_counts_from_the_meal():
    before = {"repeat": {"when": ["ACM"], "offset": 30}}
    after = {"repeat": {"when": ["PC"], "offset": 60}}
    plain = {"repeat": {"when": ["ACM", "PCM", "HS"]}}
    day = (utc(2024, 1, 1), utc(2024, 1, 2))
    assert local_starts(run(before, *day), "UTC") == ["2024-01-01 07:30"]
    assert local_starts(run(after, *day), "UTC") == [
        "2024-01-01 09:00",
        "2024-01-01 13:30",
        "2024-01-01 19:30",
    ]
    assert local_starts(run(plain, *day), "UTC") == [
        "2024-01-01 07:30",
        "2024-01-01 08:30",
        "2024-01-01 22:00",
    ]


def test_unknown_when_code_is_reported():
    schedule = run({"repeat": {"when": ["MORN", "XYZ"]}}, utc(2024, 1, 1), utc(2024, 1, 2))
    assert local_starts(schedule, "UTC") == ["2024-01-01 08:00"]
    assert "XYZ" in schedule.warnings[0]


def test_codes():
    day = (utc(2024, 1, 1), utc(2024, 1, 2))
    bid = {
        "code": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-GTSAbbreviation", "code": "BID"}]
        }
    }
    assert local_starts(run(bid, *day), "UTC") == ["2024-01-01 08:00", "2024-01-01 20:00"]
    q6h = {
        "code": {"coding": [{"code": "Q6H"}]},
        "repeat": {"boundsPeriod": {"start": "2024-01-01T03:00:00Z"}},
    }
    assert local_starts(run(q6h, *day), "UTC") == [
        "2024-01-01 03:00",
        "2024-01-01 09:00",
        "2024-01-01 15:00",
        "2024-01-01 21:00",
    ]
    qod = {"code": {"coding": [{"code": "QOD"}]}, "repeat": {"boundsPeriod": {"start": "2024-01-01"}}}
    assert local_starts(run(qod, utc(2024, 1, 1), utc(2024, 1, 6)), "UTC") == [
        "2024-01-01 08:00",
        "2024-01-03 08:00",
        "2024-01-05 08:00",
    ]
    unknown = run({"code": {"coding": [{"code": "Q7X"}]}}, *day)
    assert unknown.occurrences == [] and "Q7X" in unknown.warnings[0]
    # Times given in the data win over the code; the code fills what the data lacks.
    both = {"code": {"coding": [{"code": "BID"}]}, "repeat": {"timeOfDay": ["10:00:00"]}}
    assert local_starts(run(both, *day), "UTC") == ["2024-01-01 10:00"]
    filled = {
        "code": {"coding": [{"code": "BID"}]},
        "repeat": {"frequency": 2, "period": 1, "periodUnit": "d"},
    }
    assert local_starts(run(filled, *day), "UTC") == ["2024-01-01 08:00", "2024-01-01 20:00"]
    assert run(filled, *day).warnings == []
    structured = {
        "code": {"coding": [{"code": "LOCAL"}]},
        "repeat": {"frequency": 1, "period": 1, "periodUnit": "d"},
    }
    assert local_starts(run(structured, *day, anchor=utc(2023, 1, 1, 9)), "UTC") == ["2024-01-01 09:00"]


def test_events():
    timing = {
        "event": ["2024-01-02T10:00:00+01:00", "2024-01-03", "2024-01-01T08:00:00", "2024", "not a date"],
    }
    schedule = run(timing, utc(2024, 1, 1), utc(2024, 2, 1), zone="Europe/Berlin")
    assert local_starts(schedule, "Europe/Berlin") == [
        "2024-01-01 08:00",
        "2024-01-02 10:00",
        "2024-01-03 00:00",
    ]
    assert schedule.occurrences[-1].end == utc(2024, 1, 3, 23)  # a date: that local day
    assert len(schedule.warnings) == 2
    assert schedule.exhausted


def test_events_with_a_rule_and_bounds():
    timing = {
        "event": ["2024-01-01T09:00:00Z", "2024-01-02T08:00:00Z", "2024-01-09T12:00:00Z"],
        "repeat": {
            "frequency": 1,
            "period": 1,
            "periodUnit": "d",
            "timeOfDay": ["08:00:00"],
            "count": 2,
            "boundsPeriod": {"start": "2024-01-01T08:30:00Z", "end": "2024-01-05"},
        },
    }
    schedule = run(timing, utc(2023, 12, 1), utc(2024, 2, 1))
    # 01-01 09:00 (event), 01-02 08:00 (rule and event, once), 01-03 08:00 (rule); count is the rule's;
    # the event of 01-09 is after the bounds.
    assert local_starts(schedule, "UTC") == ["2024-01-01 09:00", "2024-01-02 08:00", "2024-01-03 08:00"]
    assert schedule.occurrences[0].end == utc(2024, 1, 2, 8)


def test_windows_end_after_duration_else_next_capped():
    with_duration = daily("08:00:00", "09:00:00", duration=30, durationUnit="min")
    schedule = run(with_duration, utc(2024, 1, 1), utc(2024, 1, 2))
    assert [o.end - o.start for o in schedule.occurrences] == [timedelta(minutes=30)] * 2
    weekly = {"repeat": {"frequency": 1, "period": 1, "periodUnit": "wk"}}
    schedule = run(weekly, utc(2024, 1, 1), utc(2024, 1, 20))
    assert {o.end - o.start for o in schedule.occurrences} == {timedelta(hours=24)}
    schedule = run(daily("08:00:00", "09:00:00"), utc(2024, 1, 1), utc(2024, 1, 2))
    assert [o.end - o.start for o in schedule.occurrences] == [timedelta(hours=1), timedelta(hours=23)]


def test_once():
    timing = {"repeat": {"count": 1, "boundsPeriod": {"start": "2024-01-05T10:00:00Z"}}}
    assert local_starts(run(timing, utc(2024, 1, 1), utc(2024, 2, 1)), "UTC") == ["2024-01-05 10:00"]


@pytest.mark.parametrize(
    "timing",
    [
        {},
        {"repeat": {"frequency": 0, "period": 1, "periodUnit": "d"}},
        {"repeat": {"frequency": 1, "period": 1, "periodUnit": "fortnight"}},
        {"repeat": {"frequency": 1, "period": -1, "periodUnit": "d"}},
        {"repeat": {"timeOfDay": ["25:00:00"]}},
        {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d", "boundsPeriod": {"start": "yesterday"}}},
        {"repeat": {"dayOfWeek": ["someday"]}},
        {"repeat": {"frequency": 2}},
        {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d", "count": "3"}},
        {
            "repeat": {
                "frequency": 1,
                "period": 1,
                "periodUnit": "d",
                "boundsPeriod": {"start": "2024-01-05", "end": "2024-01-02"},
            }
        },
    ],
)
def test_what_cannot_be_computed_is_reported(timing):
    schedule = run(timing, utc(2024, 1, 1), utc(2024, 1, 10))
    assert schedule.occurrences == []
    assert schedule.warnings


@pytest.mark.parametrize("zone", ["Mars/Olympus", "America", "../etc/passwd", "", "x" * 300, "utc"])
def test_unknown_zone(zone):
    schedule = run(daily("08:00:00"), utc(2024, 1, 1), utc(2024, 1, 10), zone=zone)
    assert schedule.occurrences == [] and "unknown time zone" in schedule.warnings[0]


def test_runaway_schedules_are_cut_with_a_warning():
    fortnight = (utc(2024, 1, 1), utc(2024, 1, 15))
    # More than one a second cannot be told apart by a Task identifier: reported, not computed.
    schedule = run({"repeat": {"frequency": 1000, "period": 1, "periodUnit": "s"}}, *fortnight)
    assert schedule.occurrences == [] and "per second" in schedule.warnings[0]
    # Every second: the per-window cap.
    started = clock.perf_counter()
    schedule = run({"repeat": {"frequency": 1, "period": 1, "periodUnit": "s"}}, *fortnight, limit=1000)
    assert len(schedule.occurrences) == 1000 and schedule.truncated and not schedule.exhausted
    assert "1000" in schedule.warnings[0]
    # Every second on Sundays, asked from Monday: the scan cap.
    sundays = {"repeat": {"frequency": 1, "period": 1, "periodUnit": "s", "dayOfWeek": ["sun"]}}
    schedule = run(sundays, *fortnight)
    assert schedule.truncated and not schedule.exhausted and str(MAX_SCAN) in schedule.warnings[0]
    assert clock.perf_counter() - started < 5


def test_the_edges_of_the_calendar():
    last = run(daily("08:00:00"), utc(9999, 12, 30), utc(9999, 12, 31, 23), zone="Pacific/Kiritimati")
    assert last.exhausted
    first = run(daily("08:00:00"), utc(1, 1, 1), utc(1, 1, 3), zone="America/New_York", anchor=utc(1, 1, 1))
    assert first.warnings or first.occurrences


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError):
        occurrences(
            daily("08:00:00"),
            window_start=datetime(2024, 1, 1),
            window_end=utc(2024, 1, 2),
            anchor=utc(2024, 1, 1),
            zone="UTC",
        )


# -- zone_of -------------------------------------------------------------------------------------


def _start(zone):
    return {"start": "2024-01-01", "_start": {"extension": [{"url": TZ_CODE_URL, "valueCode": zone}]}}


def test_zone_of():
    plan = {"resourceType": "CarePlan", "period": _start("Europe/Berlin")}
    timing = {"repeat": {"boundsPeriod": _start("America/New_York")}}
    assert zone_of(plan, timing, "UTC") == ("America/New_York", [])
    assert zone_of(plan, {"repeat": {}}, "UTC") == ("Europe/Berlin", [])
    assert zone_of({}, None, "Asia/Kolkata") == ("Asia/Kolkata", [])
    zone, warnings = zone_of(plan, {"repeat": {"boundsPeriod": _start("Nowhere/Town")}}, "UTC")
    assert zone == "Europe/Berlin" and "Nowhere/Town" in warnings[0]
    zone, warnings = zone_of(plan, {"repeat": {"boundsPeriod": _start("Europe")}}, "UTC")
    assert zone == "Europe/Berlin" and "Europe" in warnings[0]
    with pytest.raises(ValueError):
        zone_of({}, None, "Nowhere/Town")


# -- properties ----------------------------------------------------------------------------------

_times = st.lists(
    st.builds(lambda h, m: f"{h:02d}:{m:02d}:00", st.integers(0, 23), st.sampled_from([0, 15, 30, 45, 59])),
    min_size=1,
    max_size=4,
)
_days = st.lists(
    st.sampled_from(["mon", "tue", "wed", "thu", "fri", "sat", "sun"]), min_size=1, max_size=7, unique=True
)
_moment = st.datetimes(
    min_value=datetime(2017, 1, 1), max_value=datetime(2026, 12, 31), timezones=st.just(UTC)
)


@st.composite
def repeats(draw, near: datetime):
    repeat: dict = {}
    unit = draw(st.sampled_from(["h", "d", "d", "d", "wk", "mo", "a", "min"]))
    repeat["period"] = draw(st.integers(1, 3)) if unit != "min" else draw(st.sampled_from([15, 30, 90]))
    repeat["periodUnit"] = unit
    repeat["frequency"] = draw(st.integers(1, 4))
    if unit in ("d", "wk", "mo") and draw(st.booleans()):
        repeat["timeOfDay"] = draw(_times)
    elif unit == "d" and draw(st.booleans()):
        repeat["when"] = draw(st.lists(st.sampled_from(sorted(DEFAULT_WHEN_TIMES)), min_size=1, max_size=3))
        if draw(st.booleans()):
            repeat["offset"] = draw(st.integers(0, 120))
    if unit in ("d", "wk", "h") and draw(st.booleans()):
        repeat["dayOfWeek"] = draw(_days)
    bounds = draw(st.sampled_from(["period", "open", "duration", "none"]))
    if bounds in ("period", "open"):
        begin = near.replace(tzinfo=None) + timedelta(minutes=draw(st.integers(-60 * 24 * 90, 60 * 24 * 90)))
        period = {
            "start": begin.strftime("%Y-%m-%dT%H:%M:%S")
            if draw(st.booleans())
            else begin.strftime("%Y-%m-%d")
        }
        if bounds == "period":
            period["end"] = (begin + timedelta(days=draw(st.integers(0, 400)))).strftime("%Y-%m-%d")
        repeat["boundsPeriod"] = period
    elif bounds == "duration":
        repeat["boundsDuration"] = {
            "value": draw(st.integers(1, 60)),
            "code": draw(st.sampled_from(["d", "wk", "mo"])),
        }
    if draw(st.booleans()):
        repeat["count"] = draw(st.integers(1, 60))
    if draw(st.booleans()):
        repeat["duration"] = draw(st.integers(1, 240))
        repeat["durationUnit"] = "min"
    return {"repeat": repeat}


def _bounds_of(timing, zone, anchor):
    """The schedule's [start, end), computed here independently of the module's parser."""
    tz = ZoneInfo(zone)
    repeat = timing["repeat"]
    start, end = anchor, None
    period = repeat.get("boundsPeriod")
    if period:
        text = period["start"]
        naive = datetime.fromisoformat(text) if "T" in text else datetime.fromisoformat(text + "T00:00:00")
        start = to_utc(naive, tz)
        if "end" in period:
            end = to_utc(datetime.fromisoformat(period["end"] + "T00:00:00") + timedelta(days=1), tz)
    return start.replace(microsecond=0), end


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    zone=st.sampled_from(ZONES),
    anchor=_moment,
    lead=st.integers(-60 * 24 * 60, 60 * 24 * 400),
    length=st.integers(1, 60 * 24),
    split=st.floats(0, 1),
)
def test_properties(data, zone, anchor, lead, length, split):
    timing = data.draw(repeats(anchor))
    window_start = anchor + timedelta(minutes=lead)
    window_end = window_start + timedelta(hours=length)
    whole = run(timing, window_start, window_end, zone=zone, anchor=anchor)
    assume(not whole.truncated)
    event("some occurrences" if whole.occurrences else "none in the window")
    starts = [o.start for o in whole.occurrences]
    # Sorted, distinct, whole seconds, inside the window and the bounds, windows not empty.
    assert starts == sorted(set(starts))
    assert all(window_start <= s < window_end and s.microsecond == 0 for s in starts)
    begin, end = _bounds_of(timing, zone, anchor)
    assert all(s >= begin for s in starts)
    if end is not None:
        assert all(s < end for s in starts)
        if "duration" not in timing["repeat"]:
            assert all(o.end <= end for o in whole.occurrences)
    assert all(o.end > o.start for o in whole.occurrences)
    if "duration" not in timing["repeat"]:
        assert all(o.end - o.start <= timedelta(hours=24) for o in whole.occurrences)
        assert all(a.end <= b.start for a, b in zip(whole.occurrences, whole.occurrences[1:], strict=False))
    # The same occurrences (and windows) whichever windows ask for them.
    middle = window_start + timedelta(seconds=int(split * length * 3600))
    first = run(timing, window_start, middle, zone=zone, anchor=anchor)
    second = run(timing, middle, window_end, zone=zone, anchor=anchor)
    assert first.occurrences + second.occurrences == whole.occurrences
    assert second.exhausted == whole.exhausted
    if "count" in timing["repeat"]:
        assert len(whole.occurrences) <= timing["repeat"]["count"]
    # Explicit times of day are kept on the local wall clock, or moved to the end of a gap.
    tz = ZoneInfo(zone)
    if "timeOfDay" in timing["repeat"]:
        wanted = {datetime.strptime(t, "%H:%M:%S").time() for t in timing["repeat"]["timeOfDay"]}
        for s in starts:
            local = s.astimezone(tz)
            if local.time().replace(tzinfo=None) not in wanted:
                day = local.date()
                moved = {
                    to_utc(datetime.combine(d, t), tz) for t in wanted for d in (day, day - timedelta(days=1))
                }
                assert s in moved and to_utc(datetime.combine(day, local.time()), tz) == s
    if "dayOfWeek" in timing["repeat"]:
        # Only listed days, bar a time moved across midnight by a gap (Sao Paulo's were at midnight).
        listed = {
            ["mon", "tue", "wed", "thu", "fri", "sat", "sun"].index(d) for d in timing["repeat"]["dayOfWeek"]
        }
        for s in starts:
            local = s.astimezone(tz)
            before = (s - timedelta(hours=1)).astimezone(tz)
            assert local.weekday() in listed or before.weekday() in listed


def _gap_end(naive: datetime, tz: ZoneInfo) -> datetime:
    """An independent reading of a local time: the first UTC minute whose clock reads it or later."""
    guess = naive.replace(tzinfo=tz, fold=1).astimezone(UTC) - timedelta(hours=3)
    while guess.astimezone(tz).replace(tzinfo=None) < naive:
        guess += timedelta(minutes=1)
    return guess


_ODD_ZONES = ZONES + ["Pacific/Apia", "Europe/London", "America/Santiago", "Europe/Dublin"]


def _switch_days(zone: str) -> list:
    """The days (2010-2030) on which `zone` changes its offset, found by stepping through them."""
    tz = ZoneInfo(zone)
    days = []
    day = datetime(2010, 1, 1)
    previous = day.replace(tzinfo=tz).utcoffset()
    while day.year < 2031:
        following = day + timedelta(days=1)
        offset = following.replace(tzinfo=tz).utcoffset()
        if offset != previous:
            days.append(day.date())
        previous, day = offset, following
    return days


_SWITCHES = {zone: _switch_days(zone) for zone in _ODD_ZONES}


@st.composite
def switch_times(draw):
    zone = draw(st.sampled_from([z for z in _ODD_ZONES if _SWITCHES[z]]))
    day = draw(st.sampled_from(_SWITCHES[zone])) + timedelta(days=draw(st.integers(0, 1)))
    return zone, datetime.combine(day, datetime.min.time()) + timedelta(
        minutes=draw(st.integers(0, 24 * 60 - 1))
    )


@settings(max_examples=400, deadline=None)
@given(switch_times())
def test_to_utc_agrees_with_a_minute_by_minute_reading(case):
    zone, naive = case
    tz = ZoneInfo(zone)
    assert to_utc(naive, tz) == _gap_end(naive, tz)


def test_the_switch_days_are_found():
    assert datetime(2011, 12, 30).date() in _SWITCHES["Pacific/Apia"]  # the skipped day
    assert len(_SWITCHES["Australia/Lord_Howe"]) == 2 * 21  # twice a year, 2010-2030


@settings(max_examples=150, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    times=_times,
    days=_days,
    start=st.dates(min_value=datetime(2017, 1, 1).date(), max_value=datetime(2026, 1, 1).date()),
    count=st.none() | st.integers(1, 40),
    span=st.integers(1, 120),
)
def test_daily_times_against_a_plain_oracle(zone, times, days, start, count, span):
    """Daily times x days of week x bounds x count, against a day-by-day loop."""
    tz = ZoneInfo(zone)
    timing = {"repeat": {"period": 1, "periodUnit": "d", "timeOfDay": times, "dayOfWeek": days}}
    timing["repeat"]["boundsPeriod"] = {
        "start": start.isoformat(),
        "end": (start + timedelta(days=span)).isoformat(),
    }
    if count:
        timing["repeat"]["count"] = count
    listed = {["mon", "tue", "wed", "thu", "fri", "sat", "sun"].index(d) for d in days}
    expected: list[datetime] = []
    wanted = sorted({datetime.strptime(t, "%H:%M:%S").time() for t in times})
    for offset in range(span + 1):
        day = start + timedelta(days=offset)
        if day.weekday() in listed:
            for t in wanted:
                moment = _gap_end(datetime.combine(day, t), tz)
                if not expected or moment != expected[-1]:
                    expected.append(moment)
    if count:
        expected = expected[:count]
    window = (utc(2016, 12, 1), utc(2027, 6, 1))
    schedule = run(timing, *window, zone=zone, anchor=utc(2000, 1, 1))
    assert [o.start for o in schedule.occurrences] == expected
    assert schedule.exhausted


_ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", "d", "mo", "08:00", "24:00:00", "9999-12-31T23:59:59+14:00", "0001-01-01", "1e400"]),
    st.sampled_from(["2024-02-29", "2024-03-31T02:30:00", "mon", "ACM", "HS", "C", "BID"]),
    st.lists(st.sampled_from(["mon", "xyz", "08:00:00", "ACM", 3, None]), max_size=3),
    st.dictionaries(
        st.sampled_from(["start", "end", "value", "code", "unit"]),
        st.sampled_from(["2024-01-01", 5, "d", "a", "9999-12-31", "x"]),
    ),
)
_REPEAT_KEYS = [
    "frequency",
    "frequencyMax",
    "period",
    "periodMax",
    "periodUnit",
    "dayOfWeek",
    "timeOfDay",
    "when",
    "offset",
    "count",
    "countMax",
    "duration",
    "durationMax",
    "durationUnit",
    "boundsPeriod",
    "boundsDuration",
    "boundsRange",
]


@settings(max_examples=500, deadline=None)
@given(
    repeat=st.dictionaries(st.sampled_from(_REPEAT_KEYS), _ODD_VALUES, max_size=8),
    extra=st.dictionaries(st.sampled_from(["event", "code"]), _ODD_VALUES, max_size=2),
    zone=st.sampled_from(ZONES + ["", "Not/AZone"]),
    start=st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)),
)
def test_any_input_answers_a_schedule_never_an_exception(repeat, extra, zone, start):
    schedule = run({"repeat": repeat, **extra}, start, start + timedelta(days=1), zone=zone)
    starts = [o.start for o in schedule.occurrences]
    assert starts == sorted(set(starts))
    assert all(isinstance(w, str) for w in schedule.warnings)


# -- speed ---------------------------------------------------------------------------------------


def test_fourteen_days_of_two_daily_activities_is_fast(capsys):
    """Best of five batches of 100 plans (the machine is shared): per plan and per occurrence."""
    bid = {
        "code": {"coding": [{"code": "BID"}]},
        "repeat": {"boundsPeriod": {"start": "2024-01-01"}},
    }
    morning = daily("08:00:00", boundsPeriod={"start": "2024-01-01", "end": "2026-12-31"})
    start, end = utc(2025, 3, 20), utc(2025, 4, 3)  # across Berlin's spring-forward
    plans, best = 100, float("inf")
    for _ in range(5):
        found = 0
        started = clock.perf_counter()
        for _ in range(plans):
            for timing in (bid, morning):
                found += len(
                    run(timing, start, end, zone="Europe/Berlin", anchor=utc(2024, 1, 1)).occurrences
                )
        best = min(best, clock.perf_counter() - started)
        assert found == plans * (28 + 14)
    hour = (utc(2025, 4, 3, 6), utc(2025, 4, 3, 7))  # one hourly horizon extension: one occurrence
    started = clock.perf_counter()
    for _ in range(plans):
        for timing in (bid, morning):
            run(timing, *hour, zone="Europe/Berlin", anchor=utc(2024, 1, 1))
    extension = clock.perf_counter() - started
    per_occurrence = best / (plans * 42) * 1e6
    with capsys.disabled():
        print(
            f"\n14 days, two daily activities: {best / plans * 1e6:.0f} us per plan (42 occurrences), "
            f"{per_occurrence:.1f} us per occurrence; a one-hour window: {extension / plans * 1e6:.0f} us per plan"
        )
    assert per_occurrence < 100  # tens of microseconds; loose for a shared machine
