"""date search (search.html#date, #prefix): precision of the search value against stored days,
instants, Periods and open Periods, every prefix, time zones, and `_lastUpdated`."""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from resources.models import DateIndex, Resource

from .helpers import date_range, diagnostics, ids, index, refused, resource, system_rows

pytestmark = pytest.mark.django_db

ALL = {"day", "instant", "period", "open_end", "open_start", "year", "later"}


@pytest.fixture
def encounters():
    """Encounter `date` rows (Encounter.period), one per resource."""
    for fhir_id, when in [
        ("day", date_range("2024-05-15")),
        ("instant", date_range("2024-05-15T10:30:00Z")),
        ("period", date_range("2024-05-10", "2024-05-20")),
        ("open_end", date_range("2024-05-01", None)),
        ("open_start", date_range(None, "2024-04-30")),
        ("year", date_range("2023")),
        ("later", date_range("2024-06-01")),
    ]:
        index(DateIndex, resource("Encounter", fhir_id), "date", **when)
    resource("Encounter", "nodate")


@pytest.mark.parametrize(
    "query, expected",
    [
        # eq: the stored range lies inside the search range
        ("date=2024", {"day", "instant", "period", "later"}),
        ("date=2024-05", {"day", "instant", "period"}),
        ("date=2024-05-15", {"day", "instant"}),
        ("date=eq2024-05-15", {"day", "instant"}),
        ("date=2024-05-15T10:30:00Z", {"instant"}),
        ("date=2024-05-15T10:30Z", {"instant"}),
        ("date=2024-05-15T10:30:00.000Z", set()),  # a millisecond does not hold the whole second
        ("date=2024-05-15T12:30:00+02:00", {"instant"}),
        ("date=2024-05-15T12:30:00 02:00", {"instant"}),  # '+' decoded to a space
        ("date=2024-05-15T06:30:00-04:00", {"instant"}),
        ("date=2024-05-12", set()),  # inside the Period, but the Period is not inside the day
        ("date=2023", {"year"}),
        ("date=2023,2024-06", {"year", "later"}),
        # ne: not eq, row by row; resources without the element do not match
        ("date=ne2024-05-15", ALL - {"day", "instant"}),
        # gt/lt: the stored range reaches past the end / before the start of the search range
        ("date=gt2024-05-15", {"period", "open_end", "later"}),
        ("date=lt2024-05-15", {"period", "open_end", "open_start", "year"}),
        ("date=ge2024-05-15", {"period", "open_end", "later", "day", "instant"}),
        ("date=le2024-05-15", {"period", "open_end", "open_start", "year", "day", "instant"}),
        ("date=gt2024-05-12", {"period", "open_end", "day", "instant", "later"}),
        ("date=lt2024-05-12", {"period", "open_end", "open_start", "year"}),
        ("date=gt2024", {"open_end"}),
        ("date=lt2023", {"open_start"}),
        ("date=ge2024-06-01", {"open_end", "later"}),
        # sa/eb: starts after the end / ends before the start, no overlap
        ("date=sa2024-05-15", {"later"}),
        ("date=sa2024-05-31", {"later"}),
        ("date=eb2024-05-01", {"open_start", "year"}),
        ("date=eb2024-05-10", {"open_start", "year"}),
        ("date=sa2025", set()),
        ("date=eb2023", set()),
        # AND of two ranges
        ("date=ge2024-05-01&date=le2024-05-31", {"period", "open_end", "day", "instant"}),
        ("date:missing=true", {"nodate"}),
        ("date:missing=false", ALL),
    ],
)
def test_date_prefixes_and_precision(encounters, query, expected):
    assert ids("Encounter", query) == expected


def test_eb_with_open_start_needs_an_end_before_the_value(encounters):
    # open_start ends 2024-04-30: before 2023? no. Before 2024-05-01? yes.
    assert "open_start" not in ids("Encounter", "date=eb2023")
    assert "open_start" in ids("Encounter", "date=eb2024-05-01")


def test_ap_is_ten_percent_of_the_distance_to_now():
    today = timezone.now().date()
    target = today - timedelta(days=100)  # margin: about 10 days either side
    for fhir_id, offset in [("near_before", -5), ("near_after", 8), ("far_before", -20), ("far_after", 15)]:
        day = (target + timedelta(days=offset)).isoformat()
        index(DateIndex, resource("Encounter", fhir_id), "date", **date_range(day))
    assert ids("Encounter", f"date=ap{target.isoformat()}") == {"near_before", "near_after"}


def test_ap_on_open_periods():
    today = timezone.now().date()
    index(DateIndex, resource("Encounter", "ongoing"), "date", **date_range("2000-01-01", None))
    index(DateIndex, resource("Encounter", "past"), "date", **date_range(None, "2000-01-01"))
    assert ids("Encounter", f"date=ap{today.isoformat()}") == {"ongoing"}


@pytest.mark.parametrize(
    "value",
    [
        "2024-13",
        "2024-02-30",
        "xx2024",
        "gt",
        "2024-05-15T25:00Z",
        "05/15/2024",
        "2024-05-15T10:00:00+15:00",
        "today",
        "2024-5-1",
        "eq",
        "ap2024x",
    ],
)
def test_malformed_dates_are_refused(value):
    error = refused("Encounter", [("date", value)], strict=False)
    assert "'date'" in diagnostics(error) and f"'{value}'" in diagnostics(error)


@pytest.fixture
def updated():
    resource("Patient", "may", last_updated=datetime(2024, 5, 15, 10, 0, tzinfo=UTC))
    resource("Patient", "june", last_updated=datetime(2024, 6, 1, 0, 0, 0, 500000, tzinfo=UTC))


@pytest.mark.parametrize(
    "query, expected",
    [
        ("_lastUpdated=2024-05-15", {"may"}),
        ("_lastUpdated=2024", {"may", "june"}),
        ("_lastUpdated=gt2024-05-15", {"june"}),
        ("_lastUpdated=ge2024-05-15T10:00:00Z", {"may", "june"}),
        ("_lastUpdated=gt2024-05-15T10:00:00Z", {"june"}),
        ("_lastUpdated=lt2024-06-01T00:00:00Z", {"may"}),
        ("_lastUpdated=le2024-06-01T00:00:00Z", {"may", "june"}),
        ("_lastUpdated=le2024-05", {"may"}),
        ("_lastUpdated=ne2024-05", {"june"}),
        ("_lastUpdated=sa2024-05-15", {"june"}),
        ("_lastUpdated=eb2024-06", {"may"}),
        ("_lastUpdated=2024-06-01T00:00:00Z", {"june"}),
        ("_lastUpdated=2024-06-01T00:00:00.5Z", {"june"}),
        ("_lastUpdated=2024-06-01T00:00:00.4Z", set()),
    ],
)
def test_last_updated(updated, query, expected):
    assert ids("Patient", query) == expected


@pytest.mark.parametrize(
    "query", ["_lastUpdated:missing=true", "_lastUpdated=2024-99", "_lastUpdated:exact=2024"]
)
def test_last_updated_refusals(query):
    refused("Patient", query, strict=False)


@pytest.mark.django_db
def test_bounds_of_a_single_valued_date_share_one_row_lookup():
    from resources.search.criteria import build_criteria

    criteria = build_criteria(
        "Patient",
        [("birthdate", "ge1970-01-01"), ("birthdate", "lt1975-01-01")],
        strict=True,
        rows=system_rows,
    )
    sql = str(Resource.objects.system("test").filter(criteria.q).query)
    assert sql.count("resources_dateindex") == 1
    assert criteria.used == [("birthdate", "ge1970-01-01"), ("birthdate", "lt1975-01-01")]
    # A multi-valued date parameter keeps one lookup per bound (different rows may satisfy each).
    criteria = build_criteria(
        "Observation", [("date", "ge2020"), ("date", "lt2021")], strict=True, rows=system_rows
    )
    assert str(Resource.objects.system("test").filter(criteria.q).query).count("resources_dateindex") == 2
