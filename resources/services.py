"""Writes: create, update, patch, delete and their conditional forms
(https://hl7.org/fhir/R4/http.html#create, #update, #patch, #delete, #ccreate, #cond-update, #cdelete).

Every write runs in one database transaction: the Resource row, its ResourceVersion and its index rows
are written together or not at all. Versions are assigned under a row lock on the Resource row, so
concurrent writers of one resource queue and never share or skip a version number.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from audit.server_entries import refuse_server_id, refuse_server_tag
from audit.services import note_results, note_rule
from authz import grants, rules
from authz.context import SYSTEM, AccessContext
from authz.rules import CompiledRule, authorize

from . import bulk, definitions, fhirjson, hooks, versions
from .fhirpathpatch import apply_fhirpath_patch
from .indexing import clear_index, index_resources
from .jsonpatch import apply_patch, touches_filtered
from .models import Resource, ResourceVersion
from .outcomes import FhirError, bad_request, error, gone, not_found, precondition_failed
from .search.conditional import find_matches
from .validation import validate_resource


@dataclass(frozen=True)
class Stored:
    """One version of a resource as stored: `body` is its canonical JSON text ('' for a delete)."""

    resource_type: str
    fhir_id: str
    version: int
    last_updated: datetime
    body: str
    deleted: bool = False
    pk: int | None = None  # the Resource row, where the writer or reader knows it


@dataclass(frozen=True)
class WriteResult:
    stored: Stored
    status: int  # 201 created, 200 updated or matched, 204 nothing to delete


def check_type(resource_type: str) -> None:
    if resource_type not in definitions.resource_types():
        raise not_found(f"Unknown resource type '{resource_type}'")


def parse_version(etag: str | None) -> int | None:
    """The version number in an If-Match value: W/"3", "3" or 3."""
    if etag is None:
        return None
    value = etag.strip()
    if value.startswith("W/"):
        value = value[2:]
    value = value.strip('"')
    if not value.isdigit():
        raise bad_request(f"If-Match value '{etag}' is not a version ETag such as W/\"3\"", code="invalid")
    return int(value)


def _now() -> datetime:
    # Millisecond precision: the same value is stored in the row and written into meta.lastUpdated.
    now = timezone.now()
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def checked_body(resource_type: str, body: object) -> dict:
    """The body, if it is a valid resource of `resource_type`; FhirError(400) naming what is wrong."""
    check_type(resource_type)
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object (a FHIR resource)", code="structure")
    body_type = body.get("resourceType")
    if body_type != resource_type:
        raise bad_request(
            f"Resource type in the body ('{body_type}') does not match the URL ('{resource_type}')",
            code="invalid",
            expression=("resourceType",),
        )
    issues = validate_resource(body)
    if issues:
        raise FhirError(400, issues)
    refuse_server_tag(resource_type, body)  # the mark of the server's own audit entries
    return body


def _store(row: Resource, body: dict, *, method: str) -> Stored:
    """Write `body` as the existing row's next version; the caller has set row.version and holds the lock."""
    now = _now()
    stored_body = fhirjson.with_meta(body, fhir_id=row.fhir_id, version=row.version, last_updated=now)
    text = fhirjson.dumps(stored_body)
    action = "create" if row.deleted else "update"
    row.last_updated = now
    row.deleted = False
    row.body = text
    _save_row(row)
    ResourceVersion.objects.create(
        resource=row,
        resource_type=row.resource_type,
        fhir_id=row.fhir_id,
        version=row.version,
        last_updated=now,
        method=method,
        body=text,
    )
    index_resources([(row, stored_body)], fresh=False)
    hooks.changed([hooks.Change(action, row.resource_type, row.fhir_id, row.version, row.pk)])
    return Stored(row.resource_type, row.fhir_id, row.version, now, text, pk=row.pk)


def _insert(resource_type: str, fhir_id: str, body: dict, method: str) -> Stored:
    return insert_many([(resource_type, fhir_id, body, method)])[0]


def insert_many(items: list[tuple[str, str, dict, str]]) -> list[Stored]:
    """Insert new resources (type, id, checked body, method) with one statement per table.

    The bodies must have passed `checked_body`. Used for single creates and for the POST entries of
    a transaction, which is where bulk writing pays.
    """
    now = _now()
    rows, stored_bodies, texts = [], [], []
    for resource_type, fhir_id, body, _method in items:
        stored_body = fhirjson.with_meta(body, fhir_id=fhir_id, version=1, last_updated=now)
        text = fhirjson.dumps(stored_body)
        rows.append(
            Resource(resource_type=resource_type, fhir_id=fhir_id, version=1, last_updated=now, body=text)
        )
        stored_bodies.append(stored_body)
        texts.append(text)
    if bulk.wanted(len(rows)):
        for row, pk in zip(rows, bulk.reserve_ids(Resource, len(rows)), strict=True):
            row.pk = pk
        bulk.copy(
            Resource,
            ("id", "resource_type", "fhir_id", "version", "last_updated", "deleted", "body"),
            ((r.pk, r.resource_type, r.fhir_id, 1, now, False, r.body) for r in rows),
        )
        bulk.copy(
            ResourceVersion,
            ("resource", "resource_type", "fhir_id", "version", "last_updated", "method", "body"),
            (
                (r.pk, r.resource_type, r.fhir_id, 1, now, item[3], r.body)
                for r, item in zip(rows, items, strict=True)
            ),
        )
    else:
        Resource.objects.bulk_create(rows)
        ResourceVersion.objects.bulk_create(
            ResourceVersion(
                resource=row,
                resource_type=row.resource_type,
                fhir_id=row.fhir_id,
                version=1,
                last_updated=now,
                method=item[3],
                body=row.body,
            )
            for row, item in zip(rows, items, strict=True)
        )
    index_resources(list(zip(rows, stored_bodies, strict=True)), fresh=True)
    hooks.changed(hooks.Change("create", row.resource_type, row.fhir_id, 1, row.pk) for row in rows)
    return [Stored(row.resource_type, row.fhir_id, 1, now, row.body, pk=row.pk) for row in rows]


def _check_version(expected: int | None, row: Resource) -> None:
    """If-Match: the client's version must be the current one (http.html#concurrency)."""
    if expected is not None and expected != row.version:
        raise precondition_failed(
            f"Version conflict: If-Match names version {expected}, the current version is {row.version}"
        )


# Locking the row is on every update, patch and delete; the ORM's compilation of this one
# statement cost more than the database work when profiled, so it is written out.
_LOCK_SQL = (
    f"SELECT id, version, last_updated, deleted, body FROM {Resource._meta.db_table} "
    "WHERE resource_type = %s AND fhir_id = %s"
)
_SAVE_SQL = f"UPDATE {Resource._meta.db_table} SET version = %s, last_updated = %s, deleted = %s, body = %s WHERE id = %s"


def _lock_row(resource_type: str, fhir_id: str) -> Resource | None:
    """The Resource row, locked until the transaction ends (SQLite: writers are serialised anyway)."""
    if not fhirjson.is_valid_id(fhir_id):
        return None  # no such row can exist; and PostgreSQL refuses some such text (NUL) outright
    refuse_server_id(resource_type, fhir_id)  # AuditEvent/<digits>: the server's read-only audit entries
    sql = _LOCK_SQL + (" FOR UPDATE" if connection.features.has_select_for_update else "")
    with connection.cursor() as cursor:
        cursor.execute(sql, [resource_type, fhir_id])
        found = cursor.fetchone()
    if found is None:
        return None
    pk, version, last_updated, deleted, body = found
    return Resource(
        id=pk,
        resource_type=resource_type,
        fhir_id=fhir_id,
        version=version,
        last_updated=last_updated,
        deleted=bool(deleted),
        body=body,
    )


def _save_row(row: Resource) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            _SAVE_SQL,
            [
                row.version,
                connection.ops.adapt_datetimefield_value(row.last_updated),
                row.deleted,
                row.body,
                row.pk,
            ],
        )


def serialise_conditional(resource_type: str, query: str) -> None:
    """Make concurrent conditional writes with the same criteria queue, so both cannot create.

    SQLite already serialises writers (IMMEDIATE transactions); PostgreSQL takes an advisory lock on
    the criteria for the rest of the transaction.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"{resource_type}?{query}"]
            )


def new_id() -> str:
    return str(uuid.uuid4())


@transaction.atomic(savepoint=False)
def resource_create(
    ctx: AccessContext,
    *,
    resource_type: str,
    body: object,
    if_none_exist: str | None = None,
    fhir_id: str | None = None,
) -> WriteResult:
    """Create with a server-assigned id (an id in the body is ignored, as R4 requires).

    `fhir_id` is for transactions, which assign ids before writing so references can be rewritten.
    """
    check_type(resource_type)
    authorize(ctx, "create", resource_type)
    checked = checked_body(resource_type, body)
    if if_none_exist:
        serialise_conditional(resource_type, if_none_exist)
        matches = find_matches(ctx, resource_type, if_none_exist)
        if len(matches) > 1:
            raise precondition_failed(
                f"If-None-Exist criteria '{if_none_exist}' match more than one resource"
            )
        if matches:
            return _written(ctx, WriteResult(stored_from_row(matches[0]), 200))
    with grants.write_guard(ctx, [resource_type]):
        checked, note = hooks.prepare(ctx, resource_type, checked, None)
        stored = _insert(resource_type, fhir_id or new_id(), checked, "POST")
        hooks.stored(ctx, stored, note)
        may_result(ctx, "create", stored, checked)
    return _written(ctx, WriteResult(stored, 201))


@transaction.atomic(savepoint=False)
def resource_update(
    ctx: AccessContext,
    *,
    resource_type: str,
    fhir_id: str,
    body: object,
    if_match: str | None = None,
) -> WriteResult:
    """Update, or create with the client's id when the resource does not exist (update-as-create)."""
    check_type(resource_type)
    authorize(ctx, "update", resource_type)
    if not fhirjson.is_valid_id(fhir_id):
        raise bad_request(f"'{fhir_id}' is not a valid FHIR id ([A-Za-z0-9-.]{{1,64}})", code="invalid")
    checked = checked_body(resource_type, body)
    body_id = checked.get("id")
    if body_id is None:
        raise bad_request("The resource in an update must have an id", code="required", expression=("id",))
    if body_id != fhir_id:
        raise bad_request(
            f"The id in the body ('{body_id}') does not match the URL ('{fhir_id}')",
            code="invalid",
            expression=("id",),
        )
    expected = parse_version(if_match)

    def as_missing() -> FhirError:
        # What the same request answers on an id that does not exist, when the result is not one the
        # caller may create: a resource it may not read must not answer differently (no oracle).
        if expected is not None:
            return precondition_failed(f"{resource_type}/{fhir_id} does not exist; If-Match cannot hold")
        return grants.refusal("update", resource_type)

    with grants.write_guard(ctx, [resource_type]):
        row = _lock_row(resource_type, fhir_id)
        if row is None:
            if expected is not None:
                raise as_missing()
            try:
                with transaction.atomic():
                    prepared, note = hooks.prepare(ctx, resource_type, checked, None)
                    stored = _insert(resource_type, fhir_id, prepared, "PUT")
                    hooks.stored(ctx, stored, note)
            except IntegrityError:
                # A concurrent update-as-create won the insert; queue behind it and update its row.
                row = _lock_row(resource_type, fhir_id)
                if row is None:
                    raise
            else:
                may_result(ctx, "update", stored, prepared)
                return _written(ctx, WriteResult(stored, 201))
        _may_change(ctx, "update", row, as_missing)
        _check_version(expected, row)
        status = 201 if row.deleted else 200
        before = None if row.deleted else row.body
        checked, note = hooks.prepare(
            ctx, resource_type, checked, None if before is None else fhirjson.loads(before)
        )
        row.version += 1
        stored = _store(row, checked, method="PUT")
        hooks.stored(ctx, stored, note)
        may_result(ctx, "update", stored, checked, before=before)
    return _written(ctx, WriteResult(stored, status))


@transaction.atomic(savepoint=False)
def resource_conditional_update(
    ctx: AccessContext, *, resource_type: str, criteria: str, body: object, if_match: str | None = None
) -> WriteResult:
    check_type(resource_type)
    authorize(ctx, "update", resource_type)
    serialise_conditional(resource_type, criteria)
    matches = find_matches(ctx, resource_type, criteria)
    if len(matches) > 1:
        raise precondition_failed(f"Conditional update criteria '{criteria}' match more than one resource")
    body_id = body.get("id") if isinstance(body, dict) else None
    if matches:
        target = matches[0].fhir_id
        if body_id is not None and body_id != target:
            raise bad_request(
                f"The id in the body ('{body_id}') is not the id of the matching resource ('{target}')",
                code="invalid",
                expression=("id",),
            )
        body = {**body, "id": target}
        return resource_update(ctx, resource_type=resource_type, fhir_id=target, body=body, if_match=if_match)
    if body_id is not None:
        return resource_update(ctx, resource_type=resource_type, fhir_id=body_id, body=body)
    return resource_create(ctx, resource_type=resource_type, body=body)


@transaction.atomic(savepoint=False)
def resource_patch(
    ctx: AccessContext, *, resource_type: str, fhir_id: str, patch: object, if_match: str | None = None
) -> WriteResult:
    check_type(resource_type)
    authorize(ctx, "patch", resource_type)
    expected = parse_version(if_match)
    with grants.write_guard(ctx, [resource_type]):
        row = _lock_row(resource_type, fhir_id)
        if row is None:
            raise _unknown(resource_type, fhir_id)
        if row.deleted:
            # Only a caller who could read it learns that it existed.
            if not _knew(ctx, "patch", row):
                raise _unknown(resource_type, fhir_id)
            raise gone(f"{resource_type}/{fhir_id} has been deleted")
        _may_change(ctx, "patch", row, lambda: _unknown(resource_type, fhir_id))
        _check_version(expected, row)
        current = fhirjson.loads(row.body)
        _refuse_redacted_patch(ctx, row, current, patch)
        # A JSON Patch is an array of operations; a FHIRPath Patch is a Parameters resource.
        patched = (
            apply_fhirpath_patch(current, patch) if isinstance(patch, dict) else apply_patch(current, patch)
        )
        if patched.get("resourceType") != resource_type or patched.get("id") != fhir_id:
            raise bad_request("A patch may not change the resource type or id", code="invalid")
        checked, note = hooks.prepare(ctx, resource_type, checked_body(resource_type, patched), current)
        row.version += 1
        stored = _store(row, checked, method="PATCH")
        hooks.stored(ctx, stored, note)
        may_result(ctx, "patch", stored, checked, before=current)
    return _written(ctx, WriteResult(stored, 200))


@transaction.atomic(savepoint=False)
def resource_delete(ctx: AccessContext, *, resource_type: str, fhir_id: str) -> WriteResult | None:
    """Delete; None when there was nothing to delete (deleting is idempotent, R4 http.html#delete)."""
    check_type(resource_type)
    authorize(ctx, "delete", resource_type)
    with grants.write_guard(ctx, [resource_type]):
        row = _lock_row(resource_type, fhir_id)
        if row is None or row.deleted:
            # Deleting is idempotent, but only a caller whose rules allow every resource of the type,
            # or who could read what was deleted, may learn that an id exists or existed; to anyone
            # else a missing id, a deleted one and one it may not read answer alike.
            if _sees_whole_type(ctx, "delete", resource_type) or (
                row is not None and _knew(ctx, "delete", row)
            ):
                return None
            raise _unknown(resource_type, fhir_id)
        rule = _may_change(ctx, "delete", row, lambda: _unknown(resource_type, fhir_id))
        now = _now()
        row.version += 1
        row.last_updated = now
        row.deleted = True
        row.body = ""
        _save_row(row)
        ResourceVersion.objects.create(
            resource=row,
            resource_type=resource_type,
            fhir_id=fhir_id,
            version=row.version,
            last_updated=now,
            method="DELETE",
            body=None,
        )
        clear_index([row])
        hooks.deleted(ctx, resource_type, fhir_id, row.pk)
        hooks.changed([hooks.Change("delete", resource_type, fhir_id, row.version, row.pk)])
        grants.wrote(ctx, "delete", resource_type, fhir_id, row.pk, rule)
    return _written(ctx, WriteResult(Stored(resource_type, fhir_id, row.version, now, "", True, row.pk), 204))


@transaction.atomic(savepoint=False)
def resource_conditional_delete(
    ctx: AccessContext, *, resource_type: str, criteria: str
) -> WriteResult | None:
    check_type(resource_type)
    authorize(ctx, "delete", resource_type)
    serialise_conditional(resource_type, criteria)
    matches = find_matches(ctx, resource_type, criteria)
    if len(matches) > 1:
        raise precondition_failed(f"Conditional delete criteria '{criteria}' match more than one resource")
    if not matches:
        return None
    return resource_delete(ctx, resource_type=resource_type, fhir_id=matches[0].fhir_id)


def stored_from_row(row: Resource) -> Stored:
    return Stored(
        row.resource_type, row.fhir_id, row.version, row.last_updated, row.body, row.deleted, row.pk
    )


def _written(ctx: AccessContext, result: WriteResult) -> WriteResult:
    note_results(ctx, [result.stored])
    return result


# --- access: writes check the stored state and the proposed state, inside the transaction -------


def _unknown(resource_type: str, fhir_id: str) -> FhirError:
    # One message for "missing" and "not yours", as for a read (selectors.py).
    return not_found(f"{resource_type}/{fhir_id} is not known")


def _sees_whole_type(ctx: AccessContext, operation: str, resource_type: str) -> bool:
    """Whether the caller's first rule for `operation` allows every resource of the type (then it
    may learn which ids exist, deleted ones included)."""
    return ctx.role == SYSTEM or versions.whole_type_rule(ctx, operation, resource_type) is not None


def _knew(ctx: AccessContext, operation: str, row: Resource) -> bool:
    """Whether the caller may learn that the deleted `row` existed: its rules allow every resource of
    the type, or it could read (or `operation`) the last version that had content."""
    if _sees_whole_type(ctx, operation, row.resource_type):
        return True
    rule, readable = _decide_last_version(ctx, operation, row)
    return rule is not None or readable


def _may_change(
    ctx: AccessContext, operation: str, row: Resource, as_missing: Callable[[], FhirError]
) -> CompiledRule | None:
    """Before a write: the caller's rules must allow `operation` on the resource as stored; the rule
    that does is returned. One it may read but not change is a 403; one it may not even read answers
    `as_missing()`, exactly what the same request answers on an id that does not exist.

    A deleted resource is judged on its last version that had content: re-creating it over its old
    versions (and over the resources that still name it) needs the right to change what it was."""
    if ctx.role == SYSTEM:
        return None
    if row.deleted:
        rule, readable = _decide_last_version(ctx, operation, row)
    else:
        body = functools.partial(fhirjson.loads, row.body)
        rule = rules.decide(ctx, operation, row.resource_type, row.pk, body)
        readable = rule is not None or rules.readable(ctx, row.resource_type, row.pk, body)
    if rule is not None:
        return rule
    if readable:
        raise error(
            403, "forbidden", f"Your rules do not allow {operation} on {row.resource_type}/{row.fhir_id}"
        )
    raise as_missing()


_LAST_CONTENT_SQL = (
    f"SELECT body FROM {ResourceVersion._meta.db_table} "
    "WHERE resource_id = %s AND body IS NOT NULL ORDER BY version DESC LIMIT 1"
)


def _decide_last_version(
    ctx: AccessContext, operation: str, row: Resource
) -> tuple[CompiledRule | None, bool]:
    """(rule, readable) for a deleted row as its last version with content stood: that version is put
    back (row and index) inside a savepoint, decided like any stored row, and the savepoint rolled back."""
    with connection.cursor() as cursor:
        cursor.execute(_LAST_CONTENT_SQL, [row.pk])
        found = cursor.fetchone()
    if found is None or not found[0]:
        return None, False
    text = found[0]
    body = fhirjson.loads(text)
    with versions.standing_in(ctx, row.resource_type, row.fhir_id, row.pk, text, body) as scratch:
        rule = rules.decide(scratch, operation, row.resource_type, row.pk, lambda: body)
        readable = rule is not None or rules.readable(scratch, row.resource_type, row.pk, lambda: body)
    if rule is not None:
        note_rule(ctx, rule.name, rule.property_filters)
    return rule, readable


def may_result(
    ctx: AccessContext, operation: str, stored: Stored, body: dict, *, before: str | dict | None = None
) -> CompiledRule | None:
    """After a write, before commit: the new state must still be within what the caller may
    `operation` (a Patient cannot create an Observation for another patient or move one out of its
    compartment), and it must not enter a Patient compartment no rule covering the write lets the
    caller write into (an Observation about another patient with the caller as performer); nor may
    it set or change what the caller's read of it redacts (`before`: the state it replaced, text or
    dict; None for a new resource). Returns the rule that authorises the result; raising rolls the
    write back."""
    if ctx.role == SYSTEM:
        return None
    rule = rules.decide(ctx, operation, stored.resource_type, stored.pk, lambda: body)
    if rule is None or grants.outside_patient_compartments(ctx, operation, stored.resource_type, stored.pk):
        raise grants.refusal(operation, stored.resource_type)
    _keeps_redactions(ctx, stored, body, before)
    grants.wrote(ctx, operation, stored.resource_type, stored.fhir_id, stored.pk, rule)
    return rule


def _keeps_redactions(ctx: AccessContext, stored: Stored, body: dict, before: str | dict | None) -> None:
    """A caller whose read of the result is redacted may not write the redacted elements: it cannot
    see them, so a full update would silently erase or falsify them (its copy holds the redacted
    view), and writing a guess and reading back its pseudonym would undo the pseudonymisation."""
    readers = rules.matching(ctx, "read", stored.resource_type)
    if not any(rule.property_filters for rule in readers):
        return
    try:
        reader = rules.decide(ctx, "read", stored.resource_type, stored.pk, lambda: body)
    except FhirError:
        return  # it cannot read the result at all: nothing it writes comes back to it
    if reader is None or not reader.property_filters:
        return
    from authz.filters import redacted_parts

    previous = fhirjson.loads(before) if isinstance(before, str) else before
    empty = {"resourceType": stored.resource_type}
    if redacted_parts(previous or empty, reader.property_filters) != redacted_parts(
        body, reader.property_filters
    ):
        raise error(
            403,
            "forbidden",
            f"Your read of {stored.resource_type} is redacted: a write may not set, change or remove "
            "the elements it hides (use PATCH for the others)",
        )


def _refuse_redacted_patch(ctx: AccessContext, row: Resource, current: dict, patch: object) -> None:
    """A patch must not observe what the caller's read of the resource hides: a JSON Patch `test` (or
    a failing `remove`, `replace`, `move`, `copy`) on a redacted element, or a FHIRPath Patch path
    with a `where()`, would answer differently depending on the hidden value. So, whatever the
    content (403):

    - a caller that may patch the resource but not read it may not patch it at all (every operation
      can fail on what is there);
    - when the rule that lets the caller read it has property filters for its type, a JSON Patch
      that touches a filtered element (anything under or above one, or the narrative, which filters
      delete) and any FHIRPath Patch (its paths are expressions) are refused."""
    if ctx.role == SYSTEM:
        return
    readers = rules.matching(ctx, "read", row.resource_type)
    if readers and readers[0].unconditional and not any(rule.property_filters for rule in readers):
        return  # the caller reads every resource of the type in clear: nothing to decide
    try:
        rule = rules.decide(ctx, "read", row.resource_type, row.pk, lambda: current)
    except FhirError:
        rule = None
    if rule is None:
        raise error(
            403,
            "forbidden",
            f"Your rules do not let you read {row.resource_type}/{row.fhir_id}, and a patch reads what it "
            "changes",
        )
    filtered = [f.steps for f in rule.property_filters if f.applies_to(row.resource_type)]
    if not filtered:
        return
    if isinstance(patch, dict):
        touched = "a FHIRPath Patch"
    else:
        touched = touches_filtered(patch, [*filtered, ("text",)])
    if touched:
        raise error(
            403,
            "forbidden",
            f"Your read of {row.resource_type} is redacted; a patch may not read or change what is "
            f"redacted ({touched})",
        )
