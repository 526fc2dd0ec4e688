"""AuditEvent over REST, served from the audit log: `GET [base]/AuditEvent?...` (also
`POST [base]/AuditEvent/_search`) and `GET [base]/AuditEvent/[id]`; nothing else.

- AuditEvent: https://hl7.org/fhir/R4/auditevent.html (search parameters:
  https://hl7.org/fhir/R4/auditevent.html#search), each row shaped by fhir.py after IHE BALP
  (https://profiles.ihe.net/ITI/BALP/).
- Search: https://hl7.org/fhir/R4/search.html — prefixes on `date` (#prefix), `_count` (#count),
  `_total` (#total), unknown parameters reported in an OperationOutcome entry or refused under
  `Prefer: handling=strict` (#errors); paging: https://hl7.org/fhir/R4/http.html#paging.

Read-only: the audit log is append-only, so every other method is 405 with `Allow`.

Access: the rule chain decides as for any type (`authorize(ctx, "search"|"read", "AuditEvent")`, SMART
scopes included), but the log is not a table of FHIR resources that a validator could narrow (no
compartments, no bodies to check), so only a rule that grants AuditEvent outright makes sense: when
the first matching rule is not an unconditional `Allowed` (or would apply property filters it
cannot apply here), the request is refused with 403 rather than answered with everything.

Search parameters: `date` (ge/gt/le/lt/eq... on the recorded time, repeatable), `agent` (the caller's
identity reference), `entity` (a resource the request returned, wrote or aimed at, `Type/id` or
`Type/id/_history/v`), `patient` (Patient/id or id: the patient's compartment was touched),
`outcome` (0, 4, 8, 12), `subtype` (restful-interaction code), `action` (C/R/U/D/E) and `_id`;
comma-separated values are alternatives. `_sort` is `-date` (default, newest first) or `date`.

Paging: keyset on (time, id), newest first by default; the `next` link carries `_page`, an opaque
cursor signed by the server (resources/search/paging.py), so a tampered, truncated or foreign cursor is
a 400. Pages are capped at FHIR_MAX_COUNT (`_count` above it is lowered); the response is not
streamed: a large extract is `manage.py audit_export`'s job, which streams in constant memory.
`_total=accurate` counts; the total is also given, for free, when the whole result fits on the first
page.
"""

from __future__ import annotations

from email.utils import format_datetime
from types import SimpleNamespace

from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from authz.context import AccessContext
from authz.rules import authorize, note_rule
from resources import fhirjson
from resources.api import bundles
from resources.api.http import base_url, context, fhir_view, json_response, subset
from resources.api.paging import PAGE_PARAM, page_links, page_size
from resources.api.search import last, request_params, strict_handling, total_mode
from resources.outcomes import FhirError, Issue, bad_request, error, not_found, operation_outcome
from resources.search import paging
from resources.search.params import InvalidSearch
from resources.search.types.date import prefixed_date

from . import export
from .fhir import INTERACTION_SYSTEM, OPERATION_SYSTEM, audit_event
from .models import AuditEntry
from .services import note_results

RESOURCE_TYPE = "AuditEvent"
OUTCOME_SYSTEM = "http://terminology.hl7.org/CodeSystem/audit-event-outcome"
ACTION_SYSTEM = "http://hl7.org/fhir/audit-event-action"

# Result parameters understood here (the HTTP layer itself answers _format and _pretty).
_RESULT_PARAMS = frozenset({"_count", "_page", "_total", "_sort", "_summary", "_format", "_pretty"})
_SORTS = {"-date": True, "date": False, "-_lastUpdated": True, "_lastUpdated": False}

# Row operations per AuditEvent action (BALP: reads and history R, searches and operations E).
_ACTIONS = {
    "C": ("create",),
    "R": ("read", "vread", "history"),
    "U": ("update", "patch"),
    "D": ("delete",),
}
_RESTFUL = ("create", "read", "vread", "history", "update", "patch", "delete", "search", "transaction")


@csrf_exempt
def search(request: HttpRequest) -> HttpResponse:
    # The type goes to the view's kwargs so that the audit row of this request names AuditEvent.
    return _search(request, resource_type=RESOURCE_TYPE)


@csrf_exempt
def read(request: HttpRequest, fhir_id: str) -> HttpResponse:
    return _read(request, resource_type=RESOURCE_TYPE, fhir_id=fhir_id)


def _method_not_allowed(request: HttpRequest, allowed: str) -> FhirError:
    failure = error(
        405,
        "not-supported",
        f"{request.method} is not supported on {request.path}: AuditEvent is the read-only view of the "
        f"audit log (allowed: {allowed})",
    )
    failure.headers["Allow"] = allowed
    return failure


def _authorize(ctx: AccessContext, operation: str) -> None:
    rules = authorize(ctx, operation, RESOURCE_TYPE)  # 401/403 when no rule grants it at all
    if not rules:
        return  # the platform itself
    first = rules[0]
    if not first.unconditional or first.property_filters:
        # The client is not told which rule or validator refused; `reason` keeps it for the audit row.
        failure = error(
            403,
            "forbidden",
            f"Role '{ctx.role}' may not {operation} AuditEvent: the audit log is served only to roles "
            "granted it without conditions",
        )
        failure.reason = (
            f"AuditEvent needs an Allowed rule without property filters; the first that matches, "
            f"'{first.name}', is {first.validator.name}"
            + (" with property filters" if first.property_filters else "")
        )
        raise failure
    note_rule(ctx, first.name)


def _noted(ctx: AccessContext, ids: list[int]) -> None:
    """The audit row of this request lists the AuditEvents it returned. No row pk: they are not
    Resource rows, and reading the log about a patient is not reading the patient's record."""
    note_results(ctx, (SimpleNamespace(resource_type=RESOURCE_TYPE, fhir_id=str(i), version=1) for i in ids))


def _rows(rows: QuerySet) -> list[dict]:
    return [
        export.unpacked(row) for row in export.with_patients(rows).values(*export.COLUMNS, "patient_list")
    ]


# --- read -------------------------------------------------------------------------------------------


@fhir_view(operations={"GET": "read"})
def _read(request: HttpRequest, resource_type: str, fhir_id: str) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        raise _method_not_allowed(request, "GET, HEAD")
    ctx = context(request)
    _authorize(ctx, "read")
    # Ids are the rows' keys; anything else cannot name a row (and must not reach the query as such).
    found = (
        _rows(AuditEntry.objects.filter(pk=int(fhir_id))) if fhir_id.isdigit() and len(fhir_id) < 19 else []
    )
    if not found:
        raise not_found(f"AuditEvent/{fhir_id} is not known")
    row = found[0]
    _noted(ctx, [row["id"]])
    event = audit_event(row)
    summary, elements = request.GET.get("_summary"), request.GET.get("_elements")
    if summary not in (None, "false") or elements:
        event = subset(event, summary, elements)
    response = json_response(fhirjson.dumps(event), 200, request)
    response["ETag"] = 'W/"1"'
    response["Last-Modified"] = _http_date(row)
    return response


def _http_date(row: dict) -> str:
    return format_datetime(row["time"], usegmt=True)


# --- search -----------------------------------------------------------------------------------------


class _Invalid(Exception):
    pass


@fhir_view(operations={"GET": "search", "POST": "search"})
def _search(request: HttpRequest, resource_type: str) -> HttpResponse:
    form_search = request.path.rstrip("/").endswith("/_search")
    if (request.method == "POST" and not form_search) or request.method not in ("GET", "HEAD", "POST"):
        raise _method_not_allowed(request, "GET, POST" if form_search else "GET, HEAD")
    ctx = context(request)
    _authorize(ctx, "search")
    params = request_params(request)
    strict = strict_handling(request)
    condition, ignored = _criteria(params, strict=strict, base=base_url(request))
    mode = total_mode(params)
    summary = last(params, "_summary")
    count = 0 if summary == "count" else page_size(request, params)
    descending = _sort(params, strict=strict, ignored=ignored)
    signature = paging.sort_signature([RESOURCE_TYPE, "date", "desc" if descending else "asc"])
    cursor = last(params, PAGE_PARAM)
    position = None
    if cursor:
        position = paging.decode(cursor, signature=signature, kinds=[paging.KIND_INSTANT])
        if position.direction != paging.FORWARD:
            raise bad_request(
                "Invalid paging cursor: use the links of a previous page", expression=("_page",)
            )

    matching = AuditEntry.objects.filter(condition)
    fetched: list[dict] = []
    more = False
    if count:
        page = matching
        if position is not None:
            page = page.filter(_beyond(position.values[0], position.pk, descending))
        order = ("-time", "-id") if descending else ("time", "id")
        fetched = _rows(page.order_by(*order)[: count + 1])
        more = len(fetched) > count
        fetched = fetched[:count]
    if count and position is None and not more:
        total: int | None = len(fetched)  # the whole result is on this first page
    elif count == 0 or mode == "accurate":
        total = matching.count()
    else:
        total = None
    next_cursor = None
    if more:
        last_row = fetched[-1]
        next_cursor = paging.encode(
            paging.Cursor(paging.FORWARD, (last_row["time"],), last_row["id"]),
            signature=signature,
            kinds=[paging.KIND_INSTANT],
        )
    _noted(ctx, [row["id"] for row in fetched])

    base = base_url(request)
    entries = [
        bundles.entry(
            fhirjson.dumps(audit_event(row)),
            fullUrl=f"{base}/AuditEvent/{row['id']}",
            search={"mode": "match"},
        )
        for row in fetched
    ]
    if ignored:
        notes = [
            Issue("not-supported", f"Search parameter '{name}' is not supported and was ignored", "warning")
            for name in dict.fromkeys(ignored)
        ]
        entries.append(bundles.entry(fhirjson.dumps(operation_outcome(notes)), search={"mode": "outcome"}))
    kept = [(k, v) for k, v in params if k not in ignored]
    links = page_links(f"{base}/AuditEvent", kept, next_cursor, first=True)
    return json_response(bundles.bundle("searchset", entries, total=total, links=links), 200, request)


def _beyond(moment, pk: int, descending: bool) -> Q:
    """Rows after the cursor's (time, id) in the page order. The plain bound on `time` alone lets the
    time index do the work; the OR settles the rows of that same instant by id."""
    if descending:
        return Q(time__lte=moment) & (Q(time__lt=moment) | Q(pk__lt=pk))
    return Q(time__gte=moment) & (Q(time__gt=moment) | Q(pk__gt=pk))


def _sort(params: list[tuple[str, str]], *, strict: bool, ignored: list[str]) -> bool:
    value = last(params, "_sort")
    if value is None or value in _SORTS:
        return _SORTS.get(value or "-date", True)
    if strict:
        raise bad_request(
            f"AuditEvent can be sorted by date only (_sort=-date or date), not '{value}'",
            code="not-supported",
            expression=("_sort",),
        )
    ignored.append("_sort")
    return True


def _criteria(params: list[tuple[str, str]], *, strict: bool, base: str) -> tuple[Q, list[str]]:
    """The condition of the search parameters (AND across parameters, OR across a value's
    comma-separated alternatives) and the names ignored."""
    condition = Q()
    ignored: list[str] = []
    for name, value in params:
        if name in _RESULT_PARAMS:
            if name == "_summary" and value not in ("count", "false"):
                ignored.append(name)  # AuditEvents are served whole; only a count is offered
            continue
        code, _, modifier = name.partition(":")
        build = _BUILDERS.get(code)
        if build is None or modifier:
            if strict or (build is not None and modifier):
                # A modifier this server does not evaluate must not silently widen the result.
                raise bad_request(
                    f"Search parameter '{name}' is not supported for AuditEvent (supported: "
                    f"{', '.join(sorted(_BUILDERS))}, without modifiers)",
                    code="not-supported",
                    expression=(name,),
                )
            ignored.append(name)
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
    return condition, ignored


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


_BUILDERS = {
    "date": _date,
    "agent": _agent,
    "entity": _entity,
    "patient": _patient,
    "outcome": _outcome,
    "subtype": _subtype,
    "action": _action,
    "_id": _id,
}


@fhir_view
def unsupported(request: HttpRequest) -> HttpResponse:
    """History, versions and operations do not apply to the audit log, whose rows never change."""
    raise error(
        404, "not-supported", f"No FHIR interaction at {request.path}: AuditEvent supports read and search"
    )
