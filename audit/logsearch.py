"""The AuditEvent search and reads of the server's own log entries, beside the AuditEvents clients
store (the interaction layer calls these: interactions/audit.py; REST renders them: audit/api.py).

- AuditEvent: https://hl7.org/fhir/R4/auditevent.html (search parameters:
  https://hl7.org/fhir/R4/auditevent.html#search); the server's entries are shaped by fhir.py after
  IHE BALP (https://profiles.ihe.net/ITI/BALP/), which also asks applications to record their own
  events as AuditEvents: those are stored as ordinary resources.
- Search: https://hl7.org/fhir/R4/search.html — `_sort` (#_sort), `_count` (#count), `_total`
  (#total), `_summary`/`_elements` (#summary, #elements), unknown parameters (#errors); paging:
  https://hl7.org/fhir/R4/http.html#paging.

Routes (fhirplatform/urls.py sends every `[base]/AuditEvent...` URL here or on to resources/api):

- `AuditEvent/<digits>`: an entry of the server's log (server_entries.py: digits are its id space).
  `GET` reads it, `.../_history/1` vreads it; `PUT`, `PATCH` and `DELETE` are 405 whether or not the
  entry exists (the storage layer refuses such ids inside transactions too), and nothing else is
  served at such a path (404).
- `GET AuditEvent?...` and `POST AuditEvent/_search`: the merged search below.
- Everything else (create, update, patch, delete, history, vread and read of client AuditEvents,
  conditional writes, compartment and system searches) is the ordinary interaction of resources/api,
  under the access rules like any type. Those interactions see client AuditEvents only.

Access. The rule chain decides as for any type: no rule for the operation on AuditEvent, 403 (401
without credentials). Client AuditEvents are narrowed by the rules like any resource (a
PatientCompartment rule shows a patient the AuditEvents in its compartment). The server's log is not
a table of stored resources a validator could narrow or a property filter could shape, so a log
entry counts as granted only by an `Allowed` rule, the first unconditional rule that matches, and
only if that rule has no property filters: otherwise the log is left out of searches (the answer
says so in its OperationOutcome entry) and reading an entry answers 404, as for a missing one.

Merged search. The client AuditEvents come from the search engine (every AuditEvent search
parameter, modifiers, chains, includes, narrowing and property filters as for any type); the log is
searched by `date`, `_lastUpdated` (the time of the request), `agent`, `entity`, `patient`,
`outcome`, `subtype`, `action`, `_id` and `_tag` (the server tag matches every entry). A parameter the
engine ignores is ignored for both; one the engine evaluates but the log cannot (another parameter,
or a modifier) leaves the log out of that search, said in an informational issue, rather than widen
it. A bad value for either side is a 400.

Order and paging: `_sort=-date` (default, newest first) or `date`, on `recorded` (a log entry's
time). One total order across both sources: the sort value (a client AuditEvent's is the upper bound
of its `recorded` descending, the lower ascending, as the engine sorts dates), then the log's
entries before client ones at equal values (newest first; the reverse ascending), then the row key.
A page takes `_count` rows from each source beyond the position of the last row served and keeps
the first `_count` of the merge; the `next` link carries that position in `_page`, an opaque cursor
signed by the server (resources/search/paging.py). Client rows are fetched through the engine with a
cursor made for that position, so each source is read by its own index and nothing is offset.
`_total=accurate` (or `estimate`) adds the two counts; `_summary=count` gives the total alone; the
total is also given when the whole result fits on the first page, and never when a rule checks
bodies (the engine cannot count those). `_include`/`_revinclude` apply to client AuditEvents.
The audit row of the search lists exactly the AuditEvents it returned.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from django.db.models import Q, QuerySet

from authz.context import SYSTEM, AccessContext
from authz.rules import authorize, note_rule
from resources import fhirjson
from resources.fhirdates import parse_range
from resources.outcomes import Issue, bad_request, not_found
from resources.search import paging
from resources.search.engine import RESULT_PARAMS
from resources.search.engine import search as engine_search
from resources.search.params import InvalidSearch
from resources.search.types.date import prefixed_date
from resources.services import Stored

from . import export
from .fhir import INTERACTION_SYSTEM, OPERATION_SYSTEM
from .models import AuditEntry
from .server_entries import RESOURCE_TYPE, TAG_CODE, TAG_SYSTEM, is_server_id
from .services import note_results, notes

# The paging parameter of every searchset's links (resources/api/paging.py writes the same name).
PAGE_PARAM = "_page"

OUTCOME_SYSTEM = "http://terminology.hl7.org/CodeSystem/audit-event-outcome"
ACTION_SYSTEM = "http://hl7.org/fhir/audit-event-action"

_SORTS = {"-date": True, "date": False}

# Row operations per AuditEvent action (BALP: reads and history R, searches and operations E).
_ACTIONS = {
    "C": ("create",),
    "R": ("read", "vread", "history"),
    "U": ("update", "patch"),
    "D": ("delete",),
}
_RESTFUL = ("create", "read", "vread", "history", "update", "patch", "delete", "search", "transaction")

# The two sources of a merged search, and their rank at equal sort values per direction
# (descending: the log first; ascending: the exact reverse).
LOG, CLIENT = "log", "client"
_RANK = {True: {LOG: 0, CLIENT: 1}, False: {CLIENT: 0, LOG: 1}}
# An engine cursor at a log entry's position: beyond every client row of the same sort value when
# those come after the log (descending), before all of them otherwise (ascending).
_PAST_EVERY_ROW = 2**62
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# --- routing --------------------------------------------------------------------------------------


# --- access ---------------------------------------------------------------------------------------


def _log_visible(ctx: AccessContext, operation: str) -> bool:
    """Whether the caller may see the server's log entries for `operation` (see the module's
    docstring); refuses outright (401/403) a caller no rule grants `operation` on AuditEvent."""
    rules = authorize(ctx, operation, RESOURCE_TYPE)
    if ctx.role == SYSTEM:
        return True
    # Conditional validators judge stored resources, which log entries are not: none of them
    # passes one, so the entry's authorising rule is the first unconditional one.
    first = next((rule for rule in rules if rule.unconditional), None)
    if first is None or first.property_filters:
        return False
    note_rule(ctx, first.name)
    return True


def _noted(ctx: AccessContext, served: list[tuple[str, object]]) -> None:
    """The audit row of this request lists the AuditEvents it returned, in order. Log entries carry no
    row pk: they are not Resource rows, and reading the log about a patient is not reading the
    patient's record."""
    note_results(
        ctx,
        (
            SimpleNamespace(resource_type=RESOURCE_TYPE, fhir_id=str(item["id"]), version=1)
            if source == LOG
            else item
            for source, item in served
        ),
    )


def _rows(rows: QuerySet) -> list[dict]:
    return [
        export.unpacked(row) for row in export.with_patients(rows).values(*export.COLUMNS, "patient_list")
    ]


# --- read and vread of a log entry ------------------------------------------------------------------


def log_entry(ctx: AccessContext, *, fhir_id: str, operation: str, version: str = "1") -> dict:
    """A row of the server's log as the caller may see it (404 as for a missing one otherwise)."""
    visible = _log_visible(ctx, operation)
    # Ids are the rows' keys; the route lets only digits through, and a bigint bounds their length.
    found = (
        _rows(AuditEntry.objects.filter(pk=int(fhir_id)))
        if visible and is_server_id(fhir_id) and len(fhir_id) < 19
        else []
    )
    if not found:
        # Also when the caller may read AuditEvents but not the log: as if the entry did not exist.
        raise not_found(f"AuditEvent/{fhir_id} is not known")
    if version != "1":
        raise not_found(f"AuditEvent/{fhir_id} has one version, 1 (not '{version}')")
    _noted(ctx, [(LOG, found[0])])
    return found[0]


# --- merged search ----------------------------------------------------------------------------------


class _Invalid(Exception):
    pass


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _walk_key(descending: bool, moment: datetime | None, source: str, pk: int) -> tuple:
    """The position of one row in the merged order (rows without a sort value come last)."""
    if moment is None:
        return (1, 0, _RANK[descending][source], -pk if descending else pk)
    micros = _micros(moment)
    return (0, -micros if descending else micros, _RANK[descending][source], -pk if descending else pk)


def _client_moment(stored: Stored, descending: bool) -> datetime | None:
    """A client AuditEvent's sort value as the engine sorts dates (resources/search/sort.py): the
    upper bound of `recorded` descending, the lower ascending."""
    recorded = fhirjson.loads(stored.body).get("recorded")
    try:
        low, high = parse_range(recorded)
    except (ValueError, TypeError, OverflowError):
        return None  # required by R4, but a property filter may have redacted it
    return high if descending else low


def _engine_cursor(position: paging.Cursor | None, descending: bool) -> str | None:
    """A search-engine `_page` cursor standing at `position` of the merged order, for `_sort=[-]date`
    (the form resources/search/engine.py writes: the sort spec and kinds signed, the date, the pk)."""
    if position is None:
        return None
    moment, source = position.values
    pk = position.pk if source == CLIENT else _PAST_EVERY_ROW
    kinds = [paging.KIND_INSTANT]
    signature = paging.sort_signature([_engine_sort(descending), *kinds])
    return paging.encode(paging.Cursor(paging.FORWARD, (moment,), pk), signature=signature, kinds=kinds)


def _engine_horizon(cursor: str | None, descending: bool) -> tuple | None:
    """The merged-order key of the last client row the engine looked at, from its `next` cursor."""
    if cursor is None:
        return None
    kinds = [paging.KIND_INSTANT]
    signature = paging.sort_signature([_engine_sort(descending), *kinds])
    decoded = paging.decode(cursor, signature=signature, kinds=kinds)
    return _walk_key(descending, decoded.values[0], CLIENT, decoded.pk), (decoded.values[0], decoded.pk)


def _engine_sort(descending: bool) -> str:
    return "-date" if descending else "date"


def _log_beyond(position: paging.Cursor, descending: bool) -> Q:
    """Log rows after `position` in the merged order."""
    moment, source = position.values
    if moment is None:
        return Q(pk__in=[])  # every log row sorts before the rows without a date
    if source == LOG:
        if descending:
            return Q(time__lte=moment) & (Q(time__lt=moment) | Q(pk__lt=position.pk))
        return Q(time__gte=moment) & (Q(time__gt=moment) | Q(pk__gt=position.pk))
    # After a client row: log rows of the same instant follow it only where the log ranks after.
    same_follows = _RANK[descending][LOG] > _RANK[descending][CLIENT]
    if descending:
        return Q(time__lte=moment) if same_follows else Q(time__lt=moment)
    return Q(time__gte=moment) if same_follows else Q(time__gt=moment)


def _merged_cursor(signature: str, moment: datetime | None, source: str, pk: int) -> str:
    return paging.encode(
        paging.Cursor(paging.FORWARD, (moment, source), pk),
        signature=signature,
        kinds=[paging.KIND_INSTANT, paging.KIND_TEXT],
    )


def _position(text: str | None, signature: str) -> paging.Cursor | None:
    if not text:
        return None
    position = paging.decode(text, signature=signature, kinds=[paging.KIND_INSTANT, paging.KIND_TEXT])
    if position.direction != paging.FORWARD or position.values[1] not in (LOG, CLIENT):
        raise bad_request("Invalid paging cursor: use the links of a previous page", expression=("_page",))
    return position


@dataclass(frozen=True)
class MergedPage:
    """One page of the merged search: the rows served as (source, row or Stored), the included
    client resources, the total when known, notes for the outcome entry, the names ignored and the
    `_page` value of the next page."""

    served: list[tuple[str, object]]
    included: list[Stored]
    total: int | None
    notes: list[Issue]
    ignored: list[str]
    next_cursor: str | None


def merged_page(
    ctx: AccessContext,
    *,
    params: list[tuple[str, str]],
    count: int,
    mode: str | None,
    strict: bool,
    base: str,
) -> MergedPage:
    """One page of `GET AuditEvent?...` (see the module docstring): `params` as given, `count` 0 for
    a count only, `mode` the `_total` asked for, `base` this server's base as the client sees it."""
    ignored: list[str] = []
    descending = _sort(params, strict=strict, ignored=ignored)
    log_visible = _log_visible(ctx, "search")
    signature = paging.sort_signature([RESOURCE_TYPE, "merged", _engine_sort(descending)])
    position = _position(_last(params, PAGE_PARAM), signature)

    # The engine notes what it returns on the request's audit notes; the page keeps only part of
    # it, so the notes are rewritten below to what was served.
    results = notes(ctx).results
    noted_before = len(results)
    engine_params = [
        (k, v) for k, v in params if k not in ("_sort", PAGE_PARAM, "_count", "_summary", "_total")
    ]
    engine_params.append(("_sort", _engine_sort(descending)))
    want_total = "accurate" if count == 0 else mode

    def client_page(size: int):
        return engine_search(
            ctx,
            resource_type=RESOURCE_TYPE,
            params=engine_params,
            count=size,
            cursor=_engine_cursor(position, descending),
            total=want_total,
            strict=strict,
            base_urls=(base,),
        )

    client = client_page(count)
    ignored += [name for name in client.ignored if name not in ignored]
    notes_out: list[Issue] = list(client.notes)

    log_rows = AuditEntry.objects.none()
    log_used = False
    if log_visible:
        condition, unevaluable = _criteria(params, skip=set(ignored), base=base)
        if unevaluable:
            names = ", ".join(dict.fromkeys(unevaluable))
            notes_out.append(
                Issue(
                    "informational",
                    f"The server's own audit log entries are not included: they cannot be searched by "
                    f"{names} (the AuditEvents stored by clients are)",
                    "information",
                )
            )
        else:
            log_rows, log_used = AuditEntry.objects.filter(condition), True

    served: list[tuple[str, object]] = []
    more, next_cursor = False, None
    if count:
        candidates = [_client_candidate(stored, descending) for stored in client.matches]
        if log_used:
            page = log_rows if position is None else log_rows.filter(_log_beyond(position, descending))
            order = ("-time", "-id") if descending else ("time", "id")
            fetched = _rows(page.order_by(*order)[: count + 1])
            candidates += [
                (_walk_key(descending, r["time"], LOG, r["id"]), LOG, r, r["time"], r["id"]) for r in fetched
            ]
        horizon = _engine_horizon(client.next_cursor, descending)
        served, more, next_cursor = _merge(candidates, horizon, count, signature)

    client_served = [item for source, item in served if source == CLIENT]
    included = client.included
    if included and len(client_served) < len(client.matches):
        # Included resources belong to the rows served only: the engine again, for exactly those.
        included = client_page(len(client_served)).included if client_served else []
    del results[noted_before:]
    _noted(ctx, served)
    note_results(ctx, included)

    if count and position is None and not more:
        total: int | None = len(served)  # the whole result is on this first page
    elif count == 0 or mode in ("accurate", "estimate"):
        total = None if client.total is None else client.total + (log_rows.count() if log_used else 0)
    else:
        total = None

    return MergedPage(served, included, total, notes_out, ignored, next_cursor)


# A merge candidate: (position in the merged order, source, row or Stored, sort value, row key).
_Candidate = tuple[tuple, str, object, datetime | None, int]


def _client_candidate(stored: Stored, descending: bool) -> _Candidate:
    moment = _client_moment(stored, descending)
    return _walk_key(descending, moment, CLIENT, stored.pk), CLIENT, stored, moment, stored.pk


def _merge(
    candidates: list[_Candidate], horizon: tuple | None, count: int, signature: str
) -> tuple[list[tuple[str, object]], bool, str | None]:
    """(the rows served as (source, row), whether more follow, the `next` cursor) of one page.

    `horizon`: the position of the last client row the engine looked at when it has more. Past it
    an unseen client row may come before a log row, so the page stops there (it can even be empty,
    when a rule's body check dropped every client row the engine looked at) and the next page
    continues from it."""
    candidates = sorted(candidates, key=lambda c: c[0])
    within = [c for c in candidates if horizon is None or c[0] <= horizon[0]]
    chosen = within[:count]
    more = horizon is not None or len(within) > count
    served = [(source, item) for _key, source, item, _moment, _pk in chosen]
    if not more:
        return served, False, None
    if chosen:
        _key, source, _item, moment, pk = chosen[-1]
        return served, True, _merged_cursor(signature, moment, source, pk)
    moment, pk = horizon[1]
    return served, True, _merged_cursor(signature, moment, CLIENT, pk)


def _last(params: list[tuple[str, str]], name: str) -> str | None:
    values = [v for k, v in params if k == name]
    return values[-1] if values else None


def _sort(params: list[tuple[str, str]], *, strict: bool, ignored: list[str]) -> bool:
    value = _last(params, "_sort")
    if value is None or value in _SORTS:
        return _SORTS.get(value or "-date", True)
    if strict:
        raise bad_request(
            f"AuditEvent searches are sorted by date only (_sort=-date or date), not '{value}': "
            "they merge the server's audit log with client AuditEvents",
            code="not-supported",
            expression=("_sort",),
        )
    ignored.append("_sort")
    return True


def _criteria(params: list[tuple[str, str]], *, skip: set[str], base: str) -> tuple[Q, list[str]]:
    """The log's condition for the search parameters (AND across parameters, OR across a value's
    comma-separated alternatives), and the names of those the log cannot evaluate. `skip`: names
    ignored for the whole search."""
    condition = Q()
    unevaluable: list[str] = []
    for name, value in params:
        code, _, modifier = name.partition(":")
        if name in skip or code in RESULT_PARAMS:
            continue
        build = _BUILDERS.get(code)
        if build is None or modifier:
            # Evaluated for client AuditEvents only: the log cannot be shown to match.
            unevaluable.append(name)
            continue
        try:
            if not value:
                raise _Invalid("empty value")
            alternatives = [part.strip() for part in value.split(",")]
            if any(not part for part in alternatives):
                raise _Invalid("empty alternative")
            either = Q(pk__in=[])
            for part in alternatives:
                either |= build(part, base)
            condition &= either
        except (_Invalid, InvalidSearch) as exc:
            raise bad_request(
                f"Invalid search parameter '{name}' with value '{value}': {exc}", expression=(name,)
            ) from exc
    return condition, unevaluable


def _reference(value: str, base: str, *, expected_type: str | None = None) -> tuple[str, str, str | None]:
    """(type, id, version or None) of `Type/id`, `Type/id/_history/v` or `[base]/Type/id...`."""
    if base and value.startswith(base.rstrip("/") + "/"):
        value = value[len(base.rstrip("/")) + 1 :]
    target, _, version = value.partition("/_history/")
    if version and not version.isdigit():
        raise _Invalid(f"'{version}' is not a version number")
    try:
        resource_type, fhir_id = export.parse_reference(target, expected_type=expected_type)
    except ValueError as exc:
        raise _Invalid(str(exc)) from exc
    return resource_type, fhir_id, version or None


def _date(value: str, base: str) -> Q:
    return prefixed_date(value, low_field="time", high_field="time", open_ended=False)


def _agent(value: str, base: str) -> Q:
    if fhirjson.is_valid_id(value):
        return Q(identity__endswith=f"/{value}")  # a bare id: an identity of any type (search.html#reference)
    resource_type, fhir_id, version = _reference(value, base)
    if version:
        raise _Invalid("an agent is a caller identity (Type/id), not a version")
    return Q(identity=f"{resource_type}/{fhir_id}")


def _entity(value: str, base: str) -> Q:
    """The rows whose `results` hold the reference as a whole item ("T/i" or "T/i@v", space-separated),
    or whose target it is."""
    resource_type, fhir_id, version = _reference(value, base)
    ref = f"{resource_type}/{fhir_id}"
    direct = Q(resource_type=resource_type, resource_id=fhir_id)
    items = [f"{ref}@{version}"] if version else [ref]
    if version:
        direct &= Q(version=version)
    found = Q()
    for item in items:
        found |= (
            Q(results=item)
            | Q(results__startswith=item + " ")
            | Q(results__endswith=" " + item)
            | Q(results__contains=" " + item + " ")
        )
    if not version:
        # Any version of it.
        found |= Q(results__startswith=ref + "@") | Q(results__contains=" " + ref + "@")
    return found | direct


def _patient(value: str, base: str) -> Q:
    _type, fhir_id, version = _reference(value, base, expected_type="Patient")
    if version:
        raise _Invalid("a patient is Patient/id or id, not a version")
    return export.patient_condition(fhir_id)


def _token(value: str, system: str) -> str:
    """The code of `code`, `|code` or `system|code` (search.html#token), refusing other systems."""
    if "|" not in value:
        return value
    given, _, code = value.partition("|")
    if given and given != system:
        raise _Invalid(f"unknown system '{given}' (expected {system})")
    return code


def _outcome(value: str, base: str) -> Q:
    code = _token(value, OUTCOME_SYSTEM)
    success = Q(outcome=AuditEntry.SUCCESS, status__lt=400)
    if code == "0":
        return success
    if code == "4":
        return ~success & Q(status__lt=500)
    if code == "8":
        return Q(status__gte=500)
    if code == "12":
        return Q(pk__in=[])  # "major failure" (the server crashed): such a request leaves no row
    raise _Invalid("outcome is one of 0, 4, 8, 12")


def _subtype(value: str, base: str) -> Q:
    if value.startswith(OPERATION_SYSTEM + "|"):
        return Q(operation=value.partition("|")[2])
    code = _token(value, INTERACTION_SYSTEM)
    operations = {"read", "vread", "update", "patch", "delete", "create"}
    if code in operations:
        return Q(operation=code)
    typed, instance = ~Q(resource_type=""), ~Q(resource_id="")
    conditions = {
        "transaction": Q(operation="transaction"),
        "batch": Q(operation="transaction"),
        "search": Q(operation="search"),
        "search-type": Q(operation="search") & typed,
        "search-system": Q(operation="search", resource_type=""),
        "history": Q(operation="history"),
        "history-instance": Q(operation="history") & instance,
        "history-type": Q(operation="history", resource_id="") & typed,
        "history-system": Q(operation="history", resource_id="", resource_type=""),
        "operation": ~Q(operation__in=_RESTFUL),
        "capabilities": Q(pk__in=[]),  # the CapabilityStatement is public and not audited
    }
    if code not in conditions:
        raise _Invalid("not a restful-interaction code")
    return conditions[code]


def _action(value: str, base: str) -> Q:
    code = _token(value, ACTION_SYSTEM)
    if code in _ACTIONS:
        return Q(operation__in=_ACTIONS[code])
    if code == "E":
        return ~Q(operation__in=[op for ops in _ACTIONS.values() for op in ops])
    raise _Invalid("action is one of C, R, U, D, E")


def _id(value: str, base: str) -> Q:
    if not fhirjson.is_valid_id(value):
        raise _Invalid("not a FHIR id")
    return Q(pk=int(value)) if value.isdigit() and len(value) < 19 else Q(pk__in=[])


def _tag(value: str, base: str) -> Q:
    """Every log entry carries the server's tag (server_entries.py) and no other."""
    if value in (TAG_CODE, f"{TAG_SYSTEM}|{TAG_CODE}", f"{TAG_SYSTEM}|"):
        return Q(pk__isnull=False)  # not Q(): OR-ed with an empty Q, Django keeps the other side only
    return Q(pk__in=[])


_BUILDERS = {
    "date": _date,
    "_lastUpdated": _date,  # a log entry is written once, at the time of its request
    "_tag": _tag,
    "agent": _agent,
    "entity": _entity,
    "patient": _patient,
    "outcome": _outcome,
    "subtype": _subtype,
    "action": _action,
    "_id": _id,
}
