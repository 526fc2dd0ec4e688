"""What one request may cost the server, and the OperationOutcome it gets when it asks for more.

Three bounds (https://hl7.org/fhir/R4/search.html#errors lets a server refuse a search it judges too
costly, issue type `too-costly`, http://hl7.org/fhir/issue-type):

- **Database time per statement** (`FHIR_STATEMENT_TIMEOUT_MS`, 0 = none): every statement run while
  serving a FHIR request is cancelled after that long. On PostgreSQL this is the server's own
  `statement_timeout`, set on the request's connection by `StatementTimeout` (a middleware); on
  SQLite, a progress handler interrupts a statement that has run past the limit. A cancelled
  statement answers 503 `too-costly` (`refusal`), never a 500.
- **Search parameters** (`FHIR_MAX_SEARCH_PARAMS`) and **comma-separated values over all of them**
  (`FHIR_MAX_SEARCH_VALUES`): each criterion is one subquery, so a query string with thousands of
  them costs minutes of planning. More answers 400 `too-costly` before anything is compiled.
- **Fields in a query string or form** (Django's `DATA_UPLOAD_MAX_NUMBER_FIELDS`): Django raises
  `TooManyFieldsSent`, which answers 400 `too-costly` (`refusal`).

Management commands and workers are not bounded here: the timeout is applied by the middleware, on
the connections that serve HTTP requests.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable

from django.conf import settings
from django.core.exceptions import TooManyFieldsSent
from django.db import OperationalError, connection
from django.http import HttpRequest, HttpResponse, QueryDict

from .outcomes import FhirError, error

TOO_COSTLY = "too-costly"


def statement_timeout_ms() -> int:
    return int(getattr(settings, "FHIR_STATEMENT_TIMEOUT_MS", 0) or 0)


# --- search size ---------------------------------------------------------------------------------


def check_search_size(params: Iterable[tuple[str, str]]) -> None:
    """Refuse (400 too-costly) a search with more parameters, or more comma-separated values in all,
    than the settings allow. Result parameters (_sort, _include, _count...) count as well: each adds
    work of its own."""
    params = list(params)
    most = getattr(settings, "FHIR_MAX_SEARCH_PARAMS", 64)
    if len(params) > most:
        raise error(
            400,
            TOO_COSTLY,
            f"The search has {len(params)} parameters; at most {most} are accepted (FHIR_MAX_SEARCH_PARAMS)",
        )
    widest = max(((value.count(",") + 1, name) for name, value in params), default=(0, ""))
    most_in_one = getattr(settings, "FHIR_MAX_PARAM_VALUES", 200)
    if widest[0] > most_in_one:
        # One parameter's values are one OR in SQL; SQLite refuses an expression much deeper.
        raise error(
            400,
            TOO_COSTLY,
            f"Parameter '{widest[1]}' has {widest[0]} values; at most {most_in_one} are accepted "
            "(FHIR_MAX_PARAM_VALUES)",
            expression=(widest[1],),
        )
    values = sum(value.count(",") + 1 for _, value in params)
    most_values = getattr(settings, "FHIR_MAX_SEARCH_VALUES", 1000)
    if values > most_values:
        raise error(
            400,
            TOO_COSTLY,
            f"The search has {values} values; at most {most_values} are accepted (FHIR_MAX_SEARCH_VALUES)",
        )


# --- errors the request wrapper maps -------------------------------------------------------------


def refusal(exc: BaseException, request: HttpRequest | None = None) -> FhirError | None:
    """The OperationOutcome for an exception that means "this request asked for too much", or None.

    Used by the FHIR view wrapper (resources/api/http.py) for what is raised below the API: a
    statement the database cancelled at the timeout, and Django's refusal of too many fields (then
    `request.GET` is emptied, as it would raise again while the refusal is rendered and audited)."""
    if isinstance(exc, TooManyFieldsSent):
        if request is not None:
            request.GET = QueryDict()
        return error(
            400,
            TOO_COSTLY,
            f"The request has more than {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS} parameters",
        )
    if isinstance(exc, OperationalError) and _too_large(exc):
        return error(400, TOO_COSTLY, "The request is too large for the database to evaluate: ask for less")
    if isinstance(exc, OperationalError) and _cancelled(exc):
        return error(
            503,
            TOO_COSTLY,
            f"The request was cancelled after {statement_timeout_ms()} ms of database time "
            "(FHIR_STATEMENT_TIMEOUT_MS): narrow the search or ask for fewer results",
        )
    return None


# What the databases say of a statement too big to plan (SQLite's expression depth and variable
# limits, PostgreSQL's stack depth): the request asked for too much, it is not a server fault.
_TOO_LARGE = ("expression tree is too large", "too many sql variables", "stack depth limit exceeded")


def _too_large(exc: OperationalError) -> bool:
    text = str(exc.__cause__ or exc).lower()
    return any(marker in text for marker in _TOO_LARGE)


def _cancelled(exc: OperationalError) -> bool:
    cause = exc.__cause__
    # PostgreSQL: SQLSTATE 57014 query_canceled (statement_timeout); SQLite: sqlite3_interrupt.
    if getattr(cause, "sqlstate", None) == "57014":
        return True
    return isinstance(cause, sqlite3.OperationalError) and str(cause) == "interrupted"


# --- the statement timeout -----------------------------------------------------------------------

# SQLite: when the statement now running on this thread started (None: none is running).
_running = threading.local()
# Progress handler period, in SQLite virtual machine instructions (about a millisecond of work).
_SQLITE_STEPS = 10_000


class StatementTimeout:
    """Middleware: the statements of a request run under FHIR_STATEMENT_TIMEOUT_MS."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = statement_timeout_ms()
        if connection.vendor == "postgresql":
            _postgresql_timeout(limit)
            return self.get_response(request)
        if connection.vendor == "sqlite" and limit > 0:
            _running.limit = limit / 1000
            try:
                with connection.execute_wrapper(_timed):
                    return self.get_response(request)
            finally:
                _running.started = None
        return self.get_response(request)


def _postgresql_timeout(limit: int) -> None:
    """Set the session's statement_timeout once per connection (a persistent connection keeps it).
    Inside a transaction (a test's) it is set every time: a rollback undoes a SET."""
    connection.ensure_connection()
    applied = (connection.connection, limit)
    if _same(getattr(connection, "fhir_statement_timeout", None), applied) and not connection.in_atomic_block:
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('statement_timeout', %s, false)", [f"{limit}ms"])
    # Kept on Django's wrapper (database connections take no attributes): a reconnection shows as a
    # different raw connection, which gets the setting again.
    connection.fhir_statement_timeout = applied


def _same(noted: tuple | None, applied: tuple) -> bool:
    return noted is not None and noted[0] is applied[0] and noted[1] == applied[1]


def _timed(execute, sql, params, many, context):
    """execute_wrapper (SQLite): note when each statement starts, so the progress handler can stop it.
    SQLite steps a query's rows as they are fetched, after `execute` returns: the start of a query
    stays noted until the next statement (or the end of the request), so fetching counts as well."""
    wrapper = context["connection"]
    raw = wrapper.connection
    if getattr(wrapper, "fhir_progress_handler", None) is not raw:
        raw.set_progress_handler(_interrupt_late, _SQLITE_STEPS)
        wrapper.fhir_progress_handler = raw
    _running.started = time.monotonic()
    try:
        return execute(sql, params, many, context)
    finally:
        if many or not sql.lstrip()[:6].upper().startswith(("SELECT", "WITH")):
            # A write is done when execute returns: a later COMMIT must not count its time.
            _running.started = None


def _interrupt_late() -> int:
    started = getattr(_running, "started", None)
    if started is None:
        return 0
    return 1 if time.monotonic() - started > getattr(_running, "limit", float("inf")) else 0
