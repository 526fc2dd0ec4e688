"""Keyset paging (https://hl7.org/fhir/R4/http.html#paging), `_total` (search.html#total) and the
paging cursor's refusal of anything it did not write."""

import base64

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from resources.outcomes import FhirError
from resources.search import paging

from .results_support import delete, ids, patient, run

pytestmark = pytest.mark.django_db


def walk(query: str, *, count: int, between=None) -> list[str]:
    """Every match of `query`, following `next` cursors; `between(n)` runs before page n+1."""
    seen, cursor, n = [], None, 0
    while True:
        page = run("Patient", query, count=count, cursor=cursor)
        seen += ids(page)
        if page.next_cursor is None:
            return seen
        n += 1
        if between is not None:
            between(n)
        cursor = page.next_cursor


def test_walking_all_pages_sees_every_row_once():
    made = [patient(f"P{i}") for i in range(7)]
    assert walk("", count=3) == made
    assert walk("_sort=-family", count=2) == list(reversed(made))


def test_rows_inserted_while_paging_are_seen_at_most_once_and_old_rows_exactly_once():
    made = [patient(name) for name in ("b", "d", "f", "h", "j", "l")]
    inserted: list[str] = []

    def insert(n: int) -> None:
        # One row sorting before the pages already read, one after, one amid the unread ones.
        inserted.extend([patient("a" + str(n)), patient("m" + str(n)), patient("i" + str(n))])

    seen = walk("_sort=family", count=2, between=insert)
    assert len(seen) == len(set(seen))
    assert set(made) <= set(seen)
    before = {i for i, name in zip(inserted, ["a", "m", "i"] * 10, strict=False) if name == "a"}
    assert not before & set(seen)  # rows sorting before the cursor cannot appear on later pages


def test_rows_inserted_while_paging_in_insertion_order():
    made = [patient("x") for _ in range(5)]
    new: list[str] = []
    seen = walk("", count=2, between=lambda n: new.append(patient("y")))
    assert seen[:5] == made
    assert seen == made + new  # later inserts come after the cursor in insertion order


def test_ties_across_page_boundaries():
    made = [patient("Same") for _ in range(5)]
    assert walk("_sort=family", count=2) == made
    assert walk("_sort=-family", count=2) == list(reversed(made))


def test_missing_sort_values_page_correctly():
    dated = [patient("D", birthDate=f"19{50 + i}-01-01") for i in range(3)]
    undated = [patient("U") for _ in range(3)]
    assert walk("_sort=birthdate", count=2) == dated + undated
    # The tie-break follows the last key's direction: descending walks ties newest first.
    assert walk("_sort=-birthdate", count=2) == list(reversed(dated)) + list(reversed(undated))


def test_previous_walks_back():
    made = [patient(f"P{i}") for i in range(7)]
    first = run("Patient", "_sort=family", count=3)
    assert first.previous_cursor is None
    second = run("Patient", "_sort=family", count=3, cursor=first.next_cursor)
    third = run("Patient", "_sort=family", count=3, cursor=second.next_cursor)
    assert ids(third) == made[6:] and third.next_cursor is None
    back = run("Patient", "_sort=family", count=3, cursor=third.previous_cursor)
    assert ids(back) == made[3:6]
    start = run("Patient", "_sort=family", count=3, cursor=back.previous_cursor)
    assert ids(start) == made[:3]
    assert start.previous_cursor is None
    assert ids(run("Patient", "_sort=family", count=3, cursor=start.next_cursor)) == made[3:6]


def test_deleted_cursor_row_does_not_break_paging():
    made = [patient(f"P{i}") for i in range(4)]
    first = run("Patient", "", count=2)
    delete("Patient", made[1])
    assert ids(run("Patient", "", count=2, cursor=first.next_cursor)) == made[2:]


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "%",
        "a.b",
        "x" * 10_000,
        "1234.5678",
        base64.urlsafe_b64encode(b'["n","x",[],1]').decode(),
    ],
)
def test_malformed_cursor_is_400(cursor):
    patient("A")
    with pytest.raises(FhirError) as caught:
        run("Patient", "", cursor=cursor)
    assert caught.value.status == 400


def test_tampered_cursor_is_400():
    for _ in range(3):
        patient("A")
    good = run("Patient", "_sort=family", count=1).next_cursor
    payload, signature = good.rsplit(".", 1)
    forged = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB") + "." + signature
    with pytest.raises(FhirError) as caught:
        run("Patient", "_sort=family", count=1, cursor=forged)
    assert caught.value.status == 400


def test_cursor_of_another_sort_is_400():
    for _ in range(3):
        patient("A")
    cursor = run("Patient", "_sort=family", count=1).next_cursor
    with pytest.raises(FhirError) as caught:
        run("Patient", "_sort=-birthdate", count=1, cursor=cursor)
    assert caught.value.status == 400
    assert "_sort" in caught.value.issues[0].diagnostics


def test_cursor_is_url_safe():
    for _ in range(3):
        patient("Ünïcode/?&=+")
    cursor = run("Patient", "_sort=family,-_lastUpdated", count=1).next_cursor
    assert all(ch.isalnum() or ch in "-_." for ch in cursor)
    assert (
        paging.decode(
            cursor,
            signature=paging.sort_signature(["family", "-_lastUpdated", "text", "instant"]),
            kinds=["text", "instant"],
        ).values[0]
        == "unicode/?&=+"
    )


def test_total_is_not_computed_unless_asked():
    for _ in range(3):
        patient("A")
    assert run("Patient", "", count=2).total is None
    assert run("Patient", "", count=2, total="none").total is None
    assert run("Patient", "", count=2, total="accurate").total == 3
    assert run("Patient", "", count=2, total="estimate").total is not None


def test_total_is_free_when_the_first_page_is_not_full():
    for _ in range(3):
        patient("A")
    with CaptureQueriesContext(connection) as queries:
        page = run("Patient", "", count=10)
    assert page.total == 3
    assert len(queries) == 1


def test_count_zero_counts_only():
    for _ in range(3):
        patient("A")
    page = run("Patient", "", count=0)
    assert page.total == 3 and page.matches == [] and page.next_cursor is None


def test_one_statement_per_page():
    for i in range(5):
        patient(f"P{i}", birthDate=f"19{60 + i}-01-01")
    first = run("Patient", "_sort=-birthdate,family", count=2)
    with CaptureQueriesContext(connection) as queries:
        run("Patient", "_sort=-birthdate,family", count=2, cursor=first.next_cursor)
    assert len(queries) == 1
