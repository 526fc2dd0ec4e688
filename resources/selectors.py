"""Reads: read, vread and history (https://hl7.org/fhir/R4/http.html#read, #vread, #history).

Reads return the stored canonical JSON text; nothing is parsed or re-serialised on this path.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import connection
from django.db.models import Exists, OuterRef, Q

from audit.services import note_results
from authz import rules
from authz.context import SYSTEM, AccessContext
from authz.rules import authorize

from . import fhirjson
from .fhirdates import aware
from .models import Resource, ResourceVersion
from .outcomes import bad_request, gone, not_found
from .services import Stored, check_type

# Reads by id are the hottest path of the server, and compiling the equivalent ORM query costs
# several times the database round trip, so these two statements are written out once.
_READ_SQL = (
    f"SELECT id, version, last_updated, deleted, body FROM {Resource._meta.db_table} "
    "WHERE resource_type = %s AND fhir_id = %s"
)
_READ_FIELDS = ("id", "version", "last_updated", "deleted", "body")
_VREAD_SQL = (
    f"SELECT last_updated, body FROM {ResourceVersion._meta.db_table} "
    "WHERE resource_type = %s AND fhir_id = %s AND version = %s"
)


def _fetch_one(sql: str, params: list) -> tuple | None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def resource_read(ctx: AccessContext, *, resource_type: str, fhir_id: str, operation: str = "read") -> Stored:
    check_type(resource_type)
    matching = authorize(ctx, operation, resource_type)
    if not fhirjson.is_valid_id(fhir_id):
        raise _unknown(resource_type, fhir_id)
    # The platform, or a first rule that allows the whole type: nothing to decide per row.
    whole_type = not matching or matching[0].unconditional
    if whole_type:
        row = _fetch_one(_READ_SQL, [resource_type, fhir_id])
        rule = matching[0] if matching else None
        if rule is not None:
            rules.note_rule(ctx, rule.name, rule.property_filters)
    else:
        # Read and decide in one statement: the caller's rules are conditions on this row.
        found, rule = rules.fetch_decided(ctx, operation, resource_type, fhir_id, _READ_FIELDS)
        row = None if found is None else tuple(found[f] for f in _READ_FIELDS)
    if row is None:
        raise _unknown(resource_type, fhir_id)
    pk, version, last_updated, deleted, body = row
    if deleted:
        # Whether the caller could have read it cannot be told from a row without a body: only a
        # caller whose rules allow every resource of the type learns that it existed.
        if not whole_type:
            raise _unknown(resource_type, fhir_id)
        error = gone(f"{resource_type}/{fhir_id} has been deleted")
        error.headers["ETag"] = f'W/"{version}"'
        raise error
    if rule is None and ctx.role != SYSTEM:
        raise _unknown(resource_type, fhir_id)
    return _returned(
        ctx, Stored(resource_type, fhir_id, version, aware(last_updated), rules.shape(rule, body), pk=pk)
    )


def resource_vread(ctx: AccessContext, *, resource_type: str, fhir_id: str, version: str) -> Stored:
    """A version, under the rules as they apply to the resource's current state."""
    check_type(resource_type)
    authorize(ctx, "vread", resource_type)
    if not version.isdigit() or len(version) > 9 or not fhirjson.is_valid_id(fhir_id):
        raise not_found(f"{resource_type}/{fhir_id} has no version '{version}'")
    current = _fetch_one(_READ_SQL, [resource_type, fhir_id])
    if current is None:
        raise _unknown(resource_type, fhir_id)
    pk, _version, _updated, deleted, current_body = current
    if deleted:
        rule = None
        if not _sees_whole_type(ctx, "vread", resource_type):
            raise _unknown(resource_type, fhir_id)
    else:
        rule = _decide(ctx, "vread", resource_type, fhir_id, pk, current_body)
    row = _fetch_one(_VREAD_SQL, [resource_type, fhir_id, int(version)])
    if row is None:
        raise not_found(f"{resource_type}/{fhir_id} has no version {version}")
    last_updated, body = row
    if body is None:
        raise gone(f"Version {version} of {resource_type}/{fhir_id} is a deletion")
    return _returned(
        ctx,
        Stored(resource_type, fhir_id, int(version), aware(last_updated), rules.shape(rule, body), pk=pk),
    )


def _returned(ctx: AccessContext, stored: Stored) -> Stored:
    note_results(ctx, [stored])
    return stored


def _unknown(resource_type: str, fhir_id: str):
    # One message for "missing" and "not yours": the caller cannot tell them apart.
    return not_found(f"{resource_type}/{fhir_id} is not known")


def _sees_whole_type(ctx: AccessContext, operation: str, resource_type: str) -> bool:
    if ctx.role == SYSTEM:
        return True
    first = rules.matching(ctx, operation, resource_type)
    return bool(first) and first[0].unconditional


def _decide(ctx: AccessContext, operation: str, resource_type: str, fhir_id: str, pk: int, body: str):
    if ctx.role == SYSTEM:
        return None
    rule = rules.decide(ctx, operation, resource_type, pk, lambda: fhirjson.loads(body))
    if rule is None:
        raise _unknown(resource_type, fhir_id)
    return rule


@dataclass(frozen=True)
class HistoryEntry:
    stored: Stored
    method: str


@dataclass(frozen=True)
class HistoryPage:
    entries: list[HistoryEntry]
    next_cursor: str | None
    total: int | None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _cursor(last_updated: datetime, pk: int) -> str:
    # Integer microseconds: a float timestamp could round and skip rows that share an instant.
    return f"{(last_updated - _EPOCH) // _MICROSECOND}.{pk}"


def _parse_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        micros, pk = cursor.split(".")
        if not pk.isdigit() or len(pk) > 18:
            raise ValueError(pk)
        return _EPOCH + timedelta(microseconds=int(micros)), int(pk)
    except (ValueError, OverflowError) as exc:
        raise bad_request(f"Invalid paging cursor '{cursor}'", code="invalid") from exc


def resource_history(
    ctx: AccessContext,
    *,
    resource_type: str | None = None,
    fhir_id: str | None = None,
    since: datetime | None = None,
    at: tuple[datetime, datetime] | None = None,
    count: int,
    cursor: str | None = None,
) -> HistoryPage:
    """Versions newest first, keyset-paged on (last_updated, pk) so pages stay stable under writes."""
    if resource_type is not None:
        check_type(resource_type)
    authorize(ctx, "history", resource_type or "*")
    types = [resource_type] if resource_type is not None else None
    versions = ResourceVersion.objects.all()
    total = None
    instance_rule = None
    if resource_type is not None:
        versions = versions.filter(resource_type=resource_type)
    if fhir_id is not None:
        if not fhirjson.is_valid_id(fhir_id):
            raise _unknown(resource_type, fhir_id)
        versions = versions.filter(fhir_id=fhir_id)
        current = _fetch_one(_READ_SQL, [resource_type, fhir_id])
        if current is None:
            raise _unknown(resource_type, fhir_id)
        pk, _version, _updated, deleted, body = current
        if deleted:
            if not _sees_whole_type(ctx, "history", resource_type):
                raise _unknown(resource_type, fhir_id)
        else:
            instance_rule = _decide(ctx, "history", resource_type, fhir_id, pk, body)
    elif ctx.role != SYSTEM and not all(_sees_whole_type(ctx, "history", t) for t in types or ["*"]):
        # A listing keeps the versions of the resources the caller may see now (deleted ones, which
        # no rule can be evaluated on, only for callers who may see every resource of the type).
        visible = Resource.objects.restrict(ctx, "history", types).values("pk")
        versions = versions.filter(resource_id__in=visible)
    if since is not None:
        versions = versions.filter(last_updated__gte=since)
    if at is not None:
        low, high = at
        # Current at some point in [low, high]: written before high and not replaced before low.
        replaced = ResourceVersion.objects.filter(
            resource_id=OuterRef("resource_id"), version__gt=OuterRef("version"), last_updated__lte=low
        )
        versions = versions.filter(last_updated__lte=high).exclude(Exists(replaced))
    if fhir_id is not None and cursor is None:
        total = versions.count()
    if cursor is not None:
        moment, pk = _parse_cursor(cursor)
        versions = versions.filter(Q(last_updated__lt=moment) | Q(last_updated=moment, pk__lt=pk))
    rows = list(
        versions.order_by("-last_updated", "-pk").values_list(
            "pk", "resource_type", "fhir_id", "version", "last_updated", "method", "body"
        )[: count + 1]
    )
    next_cursor = _cursor(rows[count - 1][4], rows[count - 1][0]) if len(rows) > count and count else None
    rows = rows[:count]
    shaping = _history_rules(ctx, types, rows) if fhir_id is None else {}
    entries = [
        HistoryEntry(
            Stored(
                rtype,
                rid,
                ver,
                updated,
                rules.shape(instance_rule or shaping.get((rtype, rid)), body) if body else "",
                deleted=body is None,
            ),
            method,
        )
        for _pk, rtype, rid, ver, updated, method, body in rows
    ]
    note_results(ctx, [entry.stored for entry in entries])
    return HistoryPage(entries, next_cursor, total)


def _history_rules(ctx: AccessContext, types: list[str] | None, rows: list[tuple]) -> dict:
    """The authorising rule of each resource on a history page, when some rule redacts (one query)."""
    case = rules.rule_case(ctx, "history", types)
    if case is None or not rows:
        return {}
    keys = {(row[1], row[2]) for row in rows}
    condition = Q()
    for rtype, rid in keys:
        condition |= Q(resource_type=rtype, fhir_id=rid)
    found = (
        Resource.objects.restrict(ctx, "history", types)
        .filter(condition)
        .annotate(access_rule=case)
        .values_list("resource_type", "fhir_id", "access_rule")
    )
    return {(rtype, rid): rules.rule_at(ctx, position) for rtype, rid, position in found}
