"""Reads: read, vread and history (https://hl7.org/fhir/R4/http.html#read, #vread, #history).

Reads return the stored canonical JSON text; nothing is parsed or re-serialised on this path.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import connection
from django.db.models import Exists, F, OuterRef, Q

from audit.services import note_results
from authz import rules
from authz.context import SYSTEM, AccessContext
from authz.rules import authorize

from . import fhirjson, versions
from .fhirdates import aware
from .models import Resource, ResourceVersion
from .outcomes import FhirError, bad_request, gone, not_found
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
    return _read_answer(ctx, resource_type, fhir_id, row, rule, whole_type)


def _read_answer(ctx: AccessContext, resource_type: str, fhir_id: str, row, rule, whole_type: bool) -> Stored:
    """A read's answer for its row (None: no such resource) and the rule that authorised it."""
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


def resource_read_many(
    ctx: AccessContext, *, resource_type: str, fhir_ids: list[str], operation: str = "read"
) -> dict[str, Stored | FhirError]:
    """`resource_read` of several resources of one type: each answer (a Stored, or the FhirError
    its read raises) exactly as its own read. A caller whose rules allow the whole type gets them in
    one statement; one whose rules decide each resource, one read each (each decided on its row)."""
    check_type(resource_type)
    try:
        matching = authorize(ctx, operation, resource_type)
    except FhirError as refusal:
        return {fhir_id: refusal for fhir_id in fhir_ids}
    out: dict[str, Stored | FhirError] = {}
    if matching and not matching[0].unconditional:
        for fhir_id in fhir_ids:
            try:
                out[fhir_id] = resource_read(
                    ctx, resource_type=resource_type, fhir_id=fhir_id, operation=operation
                )
            except FhirError as refusal:
                out[fhir_id] = refusal
        return out
    valid = [fhir_id for fhir_id in dict.fromkeys(fhir_ids) if fhirjson.is_valid_id(fhir_id)]
    rows: dict[str, tuple] = {}
    if valid:
        sql = (
            f"SELECT fhir_id, id, version, last_updated, deleted, body FROM {Resource._meta.db_table} "
            f"WHERE resource_type = %s AND fhir_id IN ({', '.join(['%s'] * len(valid))})"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [resource_type, *valid])
            rows = {found[0]: found[1:] for found in cursor.fetchall()}
    rule = matching[0] if matching else None
    if rule is not None:
        rules.note_rule(ctx, rule.name, rule.property_filters)
    for fhir_id in fhir_ids:
        try:
            out[fhir_id] = _read_answer(ctx, resource_type, fhir_id, rows.get(fhir_id), rule, True)
        except FhirError as refusal:
            out[fhir_id] = refusal
    return out


def resource_vread(ctx: AccessContext, *, resource_type: str, fhir_id: str, version: str) -> Stored:
    """A version, decided and shaped on its own content: exactly what a read of it would return had
    it been current (versions.py). One the caller may not see answers like a missing one."""
    check_type(resource_type)
    authorize(ctx, "vread", resource_type)
    # One answer for a missing resource, a missing version and a version the caller may not see.
    missing = _unknown(resource_type, fhir_id)
    if not version.isdigit() or len(version) > 9 or not fhirjson.is_valid_id(fhir_id):
        raise missing
    current = _fetch_one(_READ_SQL, [resource_type, fhir_id])
    row = _fetch_one(_VREAD_SQL, [resource_type, fhir_id, int(version)]) if current else None
    if row is None:
        raise missing
    pk, current_version, _updated, deleted, current_body = current
    last_updated, body = row
    whole = versions.whole_type_rule(ctx, "vread", resource_type)
    if body is None:
        # A deletion has no content to decide on: only a caller who sees every resource of the type
        # learns that it happened.
        if ctx.role == SYSTEM or whole is not None:
            raise gone(f"Version {version} of {resource_type}/{fhir_id} is a deletion")
        raise missing
    if ctx.role == SYSTEM:
        rule = None
    elif whole is not None:
        rule = whole
        rules.note_rule(ctx, rule.name, rule.property_filters)
    elif int(version) == current_version and not deleted:
        rule = _decide(ctx, "vread", resource_type, fhir_id, pk, current_body)
    else:
        rule = versions.decide_version(ctx, "vread", resource_type, fhir_id, pk, body)
        if rule is None:
            raise missing
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
    """Versions newest first, keyset-paged on (last_updated, pk) so pages stay stable under writes.

    Every version is decided and shaped on its own content, exactly as a read of it would be
    (versions.py): at every level, for every caller. A caller whose rules decide row by row gets the
    versions it may see among the next few hundred, so a page can be short; its `next` link goes on
    from where this page stopped looking."""
    if resource_type is not None:
        check_type(resource_type)
    authorize(ctx, "history", resource_type or "*")
    types = [resource_type] if resource_type is not None else None
    # Every version listed is decided one by one below (_VersionJudge), on its own content.
    found = ResourceVersion.objects.system("history versions, each decided below")
    if resource_type is not None:
        found = found.filter(resource_type=resource_type)
    current = None
    if fhir_id is not None:
        current = _fetch_one(_READ_SQL, [resource_type, fhir_id]) if fhirjson.is_valid_id(fhir_id) else None
        if current is None:
            raise _unknown(resource_type, fhir_id)
        found = found.filter(fhir_id=fhir_id)
    judge = _VersionJudge(ctx, types)
    found = judge.candidates(found, instance=fhir_id is not None)
    if since is not None:
        found = found.filter(last_updated__gte=since)
    if at is not None:
        low, high = at
        # Current at some point in [low, high]: written before high and not replaced before low.
        replaced = ResourceVersion.objects.filter(
            resource_id=OuterRef("resource_id"), version__gt=OuterRef("version"), last_updated__lte=low
        )
        found = found.filter(last_updated__lte=high).exclude(Exists(replaced))
    total = found.count() if fhir_id is not None and cursor is None and judge.sees_all else None
    if cursor is not None:
        moment, pk = _parse_cursor(cursor)
        found = found.filter(Q(last_updated__lt=moment) | Q(last_updated=moment, pk__lt=pk))
    scan = count + 1 if judge.sees_all else count * _SCAN_FACTOR + _SCAN_EXTRA
    rows = list(
        found.order_by("-last_updated", "-pk").values_list(
            "pk",
            "resource_type",
            "fhir_id",
            "version",
            "last_updated",
            "method",
            "body",
            "resource_id",
            "resource__version",
            "resource__deleted",
        )[:scan]
    )
    kept = judge.keep(rows, count + 1)
    if len(kept) > count and count:
        last = kept[count - 1][0]
        next_cursor = _cursor(last[4], last[0])
    elif len(rows) == scan and count and not judge.sees_all:
        next_cursor = _cursor(rows[-1][4], rows[-1][0])  # nothing more was looked at: go on from here
    else:
        next_cursor = None
    entries = [
        HistoryEntry(
            Stored(rtype, rid, ver, updated, body, deleted=raw is None),
            method,
        )
        for (_pk, rtype, rid, ver, updated, method, raw, *_rest), body in kept[:count]
    ]
    if fhir_id is not None and not entries and cursor is None and not judge.sees_all:
        # Nothing to show of a resource the caller may not read now either: it does not exist for it.
        pk, _version, _updated, deleted, current_body = current
        if deleted:
            raise _unknown(resource_type, fhir_id)
        _decide(ctx, "history", resource_type, fhir_id, pk, current_body)  # 404 when it may not
    note_results(ctx, [entry.stored for entry in entries])
    return HistoryPage(entries, next_cursor, total)


# How many versions a page of a row-by-row decided history looks at: `_count` times this, plus this.
_SCAN_FACTOR = 5
_SCAN_EXTRA = 50


class _VersionJudge:
    """Which versions of a history listing the caller may see, and how each one is shaped."""

    def __init__(self, ctx: AccessContext, types: list[str] | None) -> None:
        self.ctx = ctx
        self.types = types
        self.system = ctx.role == SYSTEM
        covered = None if self.system else self._covered_types()
        self.covered = covered  # None: every type
        self.whole = {} if self.system else self._whole_types(covered)
        wanted = covered if types is None else types
        self.sees_all = self.system or (wanted is not None and all(t in self.whole for t in wanted))

    def _covered_types(self) -> list[str] | None:
        """The types some history rule of the caller covers (None: every type)."""
        if self.types is not None:
            return self.types
        found: set[str] = set()
        for rule in rules.matching(self.ctx, "history", "*"):
            if rule.resources is None:
                return None
            found |= rule.resources
        return sorted(found)

    def _whole_types(self, covered: list[str] | None) -> dict[str, rules.CompiledRule]:
        from . import definitions

        whole = {}
        for one in covered if covered is not None else sorted(definitions.resource_types()):
            rule = versions.whole_type_rule(self.ctx, "history", one)
            if rule is not None:
                whole[one] = rule
        return whole

    def candidates(self, found, *, instance: bool):
        """Narrow in SQL to versions that may be visible: of a type seen whole, of a resource visible
        now, or not the current state of a live resource (those are decided one by one)."""
        if self.system or self.sees_all:
            return found
        if self.covered is not None:
            found = found.filter(resource_type__in=self.covered)
        if instance:
            return found
        visible = Resource.objects.restrict(self.ctx, "history", self.types).values("pk")
        past = Q(resource__deleted=True) | Q(resource__version__gt=F("version"))
        return found.filter(Q(resource_type__in=sorted(self.whole)) | Q(resource_id__in=visible) | past)

    def keep(self, rows: list[tuple], limit: int) -> list[tuple[tuple, str]]:
        """(row, body as shown; '' for a deletion) for the rows the caller may see, at most `limit`."""
        current = self._current_rules(rows)
        kept = []
        for row in rows:
            if len(kept) >= limit:
                break
            shown = self._shown(row, current)
            if shown is not None:
                kept.append((row, shown))
        return kept

    def _shown(self, row: tuple, current: dict) -> str | None:
        _pk, rtype, rid, ver, _updated, _method, body, resource_pk, current_version, deleted = row
        if self.system:
            return body if body is not None else ""
        whole = self.whole.get(rtype)
        if whole is not None:
            rules.note_rule(self.ctx, whole.name, whole.property_filters)
            return rules.shape(whole, body) if body is not None else ""
        if body is None:
            return None  # a deletion has no content to decide on
        if ver == current_version and not deleted:
            if resource_pk not in current:
                return None
            rule = current[resource_pk]
        else:
            try:
                rule = versions.decide_version(self.ctx, "history", rtype, rid, resource_pk, body)
            except FhirError:
                return None
        if rule is None:
            return None
        if rule.validator.checks_body and rule.validator.check(self.ctx, fhirjson.loads(body)) is not True:
            return None
        return rules.shape(rule, body)

    def _current_rules(self, rows: list[tuple]) -> dict[int, rules.CompiledRule]:
        """The authorising rule of each live resource whose current version is on the page (one query)."""
        if self.system:
            return {}
        pks = {
            row[7]
            for row in rows
            if row[1] not in self.whole and row[3] == row[8] and not row[9] and row[6] is not None
        }
        if not pks:
            return {}
        types = sorted({row[1] for row in rows if row[7] in pks})
        out: dict[int, rules.CompiledRule] = {}
        for one in types:
            case = rules.rule_case(self.ctx, "history", [one])
            visible = Resource.objects.restrict(self.ctx, "history", [one]).filter(pk__in=sorted(pks))
            if case is None:
                first = rules.matching(self.ctx, "history", one)
                for pk in visible.values_list("pk", flat=True):
                    out[pk] = first[0]
                continue
            for pk, position in visible.annotate(access_rule=case).values_list("pk", "access_rule"):
                rule = rules.rule_at(self.ctx, position)
                if rule is not None:
                    out[pk] = rule
        return out
