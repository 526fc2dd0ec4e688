"""Writing the audit log: what the data layer noted during a request becomes one chained row.

The data layer notes, on the request's AccessContext, which rules authorised it, which property
filters applied and which resources it returned or wrote (`note_*`, cheap appends). The HTTP layer
calls `record` once per request: inside the write's transaction for writes (a rolled-back write
leaves no "success" row; the view layer then records a "failure" row), after the answer for reads.
A failure to record fails the request: nothing is served or kept unaudited.

Hash: sha256 over the previous hash of the chain and the row's fields in a fixed order (`HASHED`),
as compact JSON; `entry_hash` is the one definition that writing and verifying share.
"""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone
from django.utils.ipv6 import clean_ipv6_address

from authz.context import AccessContext

from .models import AuditEntry, AuditPatient

GENESIS = "0" * 64
HASHED = (
    "time",
    "request_id",
    "chain",
    "seq",
    "role",
    "identity",
    "user",
    "client_id",
    "credential",
    "auth_method",
    "on_behalf_of",
    "http_method",
    "path",
    "operation",
    "resource_type",
    "resource_id",
    "version",
    "query",
    "results",
    "rule",
    "filters",
    "outcome",
    "status",
    "reason",
    "client_ip",
    "user_agent",
)
# A search page can return thousands of resources; the row keeps the first ones and says so.
MAX_RESULTS = 2000


def entry_hash(prev_hash: str, fields: dict) -> str:
    values = [prev_hash] + [_plain(fields.get(name)) for name in HASHED]
    return hashlib.sha256(json.dumps(values, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()


def _plain(value: object) -> object:
    if value is None:
        return ""
    if hasattr(value, "isoformat"):
        return value.astimezone(UTC).isoformat() if value.tzinfo else value.isoformat()
    return value


# --- what the data layer notes -------------------------------------------------------------------

_NOTES = ("audit",)


@dataclass
class Notes:
    rules: list[str]
    filters: list[str]
    results: list[tuple[str, str, int | None, int | None]]  # type, id, version, row pk


def notes(ctx: AccessContext) -> Notes:
    return ctx.memo(_NOTES, lambda: Notes([], [], []))


def note_rule(ctx: AccessContext, name: str, filters: Iterable = ()) -> None:
    noted = notes(ctx)
    if name not in noted.rules:
        noted.rules.append(name)
        noted.filters.extend(f"{name}:{f.path}:{f.action}" for f in filters)


def note_results(ctx: AccessContext, stored: Iterable) -> None:
    results = notes(ctx).results
    for one in stored:
        if len(results) >= MAX_RESULTS:
            return
        results.append((one.resource_type, one.fhir_id, one.version, getattr(one, "pk", None)))


# --- the chain of this writer ---------------------------------------------------------------------


class _Chain(threading.local):
    def __init__(self) -> None:
        self.id = uuid.uuid4().hex
        self.seq = 0
        self.hash = GENESIS
        self.undo: tuple[int, str] | None = None


_chain = _Chain()


def undo_last() -> None:
    """The transaction that held the last row rolled back: the chain continues from the row before."""
    if _chain.undo is not None:
        _chain.seq, _chain.hash = _chain.undo
        _chain.undo = None


def settle() -> None:
    """The last row is durable (or part of a transaction that committed)."""
    _chain.undo = None


def record(
    ctx: AccessContext,
    *,
    http_method: str,
    path: str,
    operation: str,
    resource_type: str = "",
    resource_id: str = "",
    query: str = "",
    outcome: str,
    status: int,
    reason: str = "",
    client_ip: str | None = None,
    user_agent: str = "",
) -> None:
    """Write the request's row (and its patient index rows) in one go."""
    noted = notes(ctx)
    results = noted.results
    version = str(results[0][2]) if len(results) == 1 and results[0][2] is not None else ""
    fields = {
        "time": timezone.now(),
        "request_id": ctx.request_id[:200],
        "chain": _chain.id,
        "seq": _chain.seq + 1,
        "role": ctx.role,
        "identity": ctx.identity or "",
        "user": ctx.user,
        "client_id": ctx.client_id,
        "credential": ctx.credential[:300],
        "auth_method": ctx.method,
        "on_behalf_of": ctx.on_behalf_of,
        "http_method": http_method[:10],
        "path": path[:1000],
        "operation": operation,
        "resource_type": resource_type if resource_type != "*" else "",
        "resource_id": (resource_id or "")[:64],
        "version": version,
        "query": query[:8000],
        "results": " ".join(f"{t}/{i}@{v}" if v is not None else f"{t}/{i}" for t, i, v, _ in results),
        "rule": ",".join(noted.rules)[:100],
        "filters": ",".join(noted.filters),
        "outcome": outcome,
        "status": status,
        "reason": reason[:2000],
        "client_ip": client_ip,
        "user_agent": user_agent[:500],
    }
    if fields["client_ip"] and ":" in fields["client_ip"]:
        # Stored in the canonical IPv6 form; hash what will be stored, or verification fails.
        try:
            fields["client_ip"] = clean_ipv6_address(fields["client_ip"])
        except ValidationError:
            fields["client_ip"] = None
    # PostgreSQL text cannot hold NUL; a request path may (it is refused, and audited, all the same).
    fields = {k: v.replace("\x00", "\\0") if isinstance(v, str) else v for k, v in fields.items()}
    digest = entry_hash(_chain.hash, fields)
    pks = [pk for _t, _i, _v, pk in results if pk is not None]
    _insert({**fields, "prev_hash": _chain.hash, "hash": digest}, pks)
    # A rolled-back write takes its row with it (undo_last), and the failure row written next
    # takes the same place in the chain.
    _chain.undo = (_chain.seq, _chain.hash)
    _chain.seq, _chain.hash = fields["seq"], digest


_COLUMNS = (*HASHED, "prev_hash", "hash")


def _insert(row: dict, pks: list[int]) -> None:
    """The entry and its patient index rows. Reads are audited in autocommit mode, so this is one
    statement on PostgreSQL (a data-modifying CTE) rather than a transaction of three round trips."""
    from resources.models import CompartmentMembership, Resource

    ops = connection.ops
    values = [
        ops.adapt_datetimefield_value(row[c])
        if c == "time"
        else ops.adapt_ipaddressfield_value(row[c])
        if c == "client_ip"
        else row[c]
        for c in _COLUMNS
    ]
    entry_table, patient_table = AuditEntry._meta.db_table, AuditPatient._meta.db_table
    columns = ", ".join(connection.ops.quote_name(c) for c in _COLUMNS)
    placeholders = ", ".join(["%s"] * len(_COLUMNS))
    insert = f"INSERT INTO {entry_table} ({columns}) VALUES ({placeholders}) RETURNING id"
    asynchronous = connection.vendor == "postgresql" and not connection.in_atomic_block
    if asynchronous:
        # The row of a read is a statement of its own; waiting for its WAL flush would make every
        # read pay a disk sync, so it commits asynchronously: a database crash may lose the last
        # few hundred milliseconds of read rows. A write's row commits with the write, synchronously.
        insert = f"INSERT INTO {entry_table} ({columns}) SELECT {placeholders} FROM async RETURNING id"
    prefix = (
        "WITH async AS (SELECT set_config('synchronous_commit', 'off', true) AS s)" if asynchronous else ""
    )
    if not pks:
        with connection.cursor() as cursor:
            cursor.execute(f"{prefix} {insert}", values)
        return
    marks = ", ".join(["%s"] * len(pks))
    patients = (
        f"SELECT compartment_id AS pid FROM {CompartmentMembership._meta.db_table} "
        f"WHERE compartment_type = 'Patient' AND resource_id IN ({marks}) "
        f"UNION SELECT fhir_id FROM {Resource._meta.db_table} WHERE resource_type = 'Patient' AND id IN ({marks})"
    )
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            head = f"{prefix}, e AS ({insert})" if asynchronous else f"WITH e AS ({insert})"
            cursor.execute(
                f"{head} INSERT INTO {patient_table} (entry_id, patient_id) "
                f"SELECT e.id, p.pid FROM e, ({patients}) p",
                [*values, *pks, *pks],
            )
            return
        with transaction.atomic(savepoint=False):
            cursor.execute(insert, values)
            entry_id = cursor.fetchone()[0]
            cursor.execute(
                f"INSERT INTO {patient_table} (entry_id, patient_id) SELECT %s, pid FROM ({patients})",
                [entry_id, *pks, *pks],
            )


def enabled() -> bool:
    return settings.FHIR_AUDIT
