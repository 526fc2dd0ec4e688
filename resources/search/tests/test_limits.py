"""What a request may cost (resources/limits.py): every reported way of making the server work for
minutes or answer 500 gets a quick OperationOutcome instead (search.html#errors, `too-costly`)."""

from __future__ import annotations

import time
from urllib.parse import urlencode

import pytest
from django.db import connection
from django.test import override_settings

from resources import limits
from resources.search import engine
from resources.tests.factories import ObservationFactory, PatientFactory

pytestmark = pytest.mark.django_db


def outcome(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.content[:500]
    body = response.json_body
    assert body["resourceType"] == "OperationOutcome"
    if code is not None:
        assert body["issue"][0]["code"] == code, body
    return body


@pytest.fixture
def observations(fhir):
    patient = fhir.create(PatientFactory())
    for value in (1, 5, 72):
        observation = ObservationFactory(subject={"reference": f"Patient/{patient['id']}"})
        observation["valueQuantity"] = {**observation["valueQuantity"], "value": value}
        fhir.create(observation)
    return patient


@pytest.mark.parametrize("repeated", [200, 900])
def test_many_repeated_parameters_answer_quickly(fhir, observations, repeated):
    # Reported: 200 repeated `value-quantity=ge1` took 13 s, 3,000 never finished.
    started = time.monotonic()
    response = fhir.get("Observation?" + urlencode([("value-quantity", "ge1")] * repeated))
    assert time.monotonic() - started < 2
    body = outcome(response, 400, "too-costly")
    assert "FHIR_MAX_SEARCH_PARAMS" in body["issue"][0]["diagnostics"]


def test_parameters_up_to_the_cap_are_searched(fhir, observations):
    with override_settings(FHIR_MAX_SEARCH_PARAMS=10):
        response = fhir.get("Observation?" + urlencode([("value-quantity", "ge2")] * 10))
        assert response.status_code == 200, response.content[:300]
        assert len(response.json_body["entry"]) == 2
        outcome(fhir.get("Observation?" + urlencode([("value-quantity", "ge2")] * 11)), 400, "too-costly")


def test_many_comma_separated_values_are_refused(fhir, observations):
    with override_settings(FHIR_MAX_SEARCH_VALUES=50):
        values = ",".join(f"ge{n}" for n in range(51))
        body = outcome(fhir.get(f"Observation?value-quantity={values}"), 400, "too-costly")
        assert "FHIR_MAX_SEARCH_VALUES" in body["issue"][0]["diagnostics"]


def test_the_cap_holds_for_searches_in_a_batch(fhir, observations):
    url = "Observation?" + urlencode([("value-quantity", "ge1")] * 200)
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [{"request": {"method": "GET", "url": url}}]}
    response = fhir.post("", batch)
    assert response.status_code == 200, response.content[:300]
    (entry,) = response.json_body["entry"]
    assert entry["response"]["status"].startswith("400")


def test_more_query_fields_than_django_accepts_is_an_outcome(fhir):
    # Reported: a GET with more than 1,000 query parameters answered 500 (TooManyFieldsSent).
    started = time.monotonic()
    response = fhir.get("Observation?" + urlencode([("value-quantity", "ge1")] * 3000))
    assert time.monotonic() - started < 2
    outcome(response, 400, "too-costly")
    outcome(fhir.get("Patient?" + "&".join(f"p{n}=x" for n in range(1001))), 400, "too-costly")


@pytest.mark.parametrize(
    "url",
    [
        "Observation?date=ap0001",
        "Patient?birthdate=ap0001",
        "Patient?_lastUpdated=ap0001",
        "Observation?date=ap9999",
        "Patient?birthdate=ap9999-12-31T23:59:59-14:00",
        "Patient?birthdate=0001-01-01T00:00:00%2B14:00",
        "Patient?birthdate=9999-12-31T23:59:59%2B14:00",
        "Patient?_lastUpdated=gt9999-12-31T23:59:59.999999Z",
        "Patient?_lastUpdated=lt0001",
    ],
)
def test_dates_at_the_ends_of_time_are_searched(fhir, observations, url):
    # Reported: `date=ap0001`, `birthdate=ap0001` and `_lastUpdated=ap0001` answered 500.
    response = fhir.get(url)
    assert response.status_code == 200, response.content[:300]
    assert response.json_body["type"] == "searchset"


@pytest.mark.parametrize(
    "url",
    [
        "_history?_since=9999-12-31T23:59:59%2B14:00",
        "_history?_since=9999",
        "Patient/_history?_at=9999-12-31T23:59:59-14:00",
        "_history?_since=0001-01-01T00:00:00%2B14:00",
        "Patient/$everything?_since=9999-12-31T23:59:59%2B14:00",
    ],
)
def test_history_instants_at_the_ends_of_time(fhir, observations, url):
    # Reported: `_history?_since=9999-12-31T23:59:59+14:00` answered 500 (OverflowError).
    response = fhir.get(url)
    assert response.status_code == 200, response.content[:300]


def test_an_impossible_date_is_a_400(fhir):
    outcome(fhir.get("Patient?birthdate=2024-02-30"), 400)
    outcome(fhir.get("_history?_since=2024-13"), 400)


# --- the statement timeout -----------------------------------------------------------------------


def _slow_statement() -> None:
    """A statement that runs far longer than the test's timeout, on either database."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_sleep(5)")
        else:
            cursor.execute(
                "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 100000000) "
                "SELECT count(*) FROM n"
            )


@pytest.fixture
def restore_timeout():
    """Requests leave the timeout on the connection (as a server wants); the flush after a
    transactional test must not run under the test's short one."""
    yield
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET statement_timeout = 0")
    connection.fhir_statement_timeout = None


@pytest.mark.django_db(transaction=True)
def test_a_statement_past_the_timeout_is_cancelled(client, monkeypatch, restore_timeout):
    # Autocommit, as a server runs reads: a cancelled statement leaves no aborted transaction behind
    # (the test transaction of an ordinary test would be), so the audit row is still written.
    from conftest import bearer

    def slow(*args, **kwargs):
        _slow_statement()
        raise AssertionError("the statement was not cancelled")

    monkeypatch.setattr(engine, "_execute", slow)
    with override_settings(FHIR_STATEMENT_TIMEOUT_MS=200):
        started = time.monotonic()
        response = client.get("/fhir/Patient", headers={"Authorization": bearer("Admin")})
        elapsed = time.monotonic() - started
    assert elapsed < 3, elapsed
    assert response.status_code == 503, response.content[:300]
    body = response.json()
    assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["code"] == "too-costly"
    assert "FHIR_STATEMENT_TIMEOUT_MS" in body["issue"][0]["diagnostics"]


@pytest.mark.django_db(transaction=True)
def test_the_timeout_leaves_ordinary_requests_alone(client, restore_timeout):
    from conftest import bearer

    with override_settings(FHIR_STATEMENT_TIMEOUT_MS=5000):
        response = client.get("/fhir/Patient?name=x", headers={"Authorization": bearer("Admin")})
    assert response.status_code == 200, response.content[:300]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SHOW statement_timeout")
            assert cursor.fetchone()[0] == "5s"


def test_other_errors_are_not_mistaken_for_limits():
    assert limits.refusal(ValueError("x")) is None
    from django.db import OperationalError

    assert limits.refusal(OperationalError("database is locked")) is None


def test_many_values_in_one_parameter_are_too_costly_not_a_500(fhir):
    """An outside attack: 496 comma-separated codes made SQLite refuse the statement (expression tree
    too large) and the server answered 500."""
    codes = ",".join(f"x{n}" for n in range(496))
    response = fhir.get(f"Observation?code={codes}")
    assert response.status_code == 400, response.content
    issue = response.json_body["issue"][0]
    assert issue["code"] == "too-costly" and "code" in issue["diagnostics"]
    assert fhir.get("Observation?code=" + ",".join(f"x{n}" for n in range(200))).status_code == 200
