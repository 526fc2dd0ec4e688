"""Writing the audit log: what the data layer noted during a request becomes one chained row.

The data layer notes, on the request's AccessContext, which rules authorised it, which property
filters applied and which resources it returned or wrote (`note_*`, cheap appends). The HTTP layer
calls `record` once per request: inside the write's transaction for writes (a rolled-back write
leaves no "success" row; the view layer then records a "failure" row), after the answer for reads.
A failure to record fails the request: nothing is served or kept unaudited.

The chain: one per process, shared by its threads (`_Chain`), so that under a threaded WSGI
server, `runserver` or an ASGI server consecutive requests are consecutive rows. A row is chained
under the chain's lock; a row written in a transaction keeps the lock until the transaction ends
(`settle` after the commit, `undo_last` after a rollback, which takes the row's place back), so a
rolled-back write never leaves a row chained onto a row that does not exist. Reads are written in
autocommit and hold the lock for their one statement; no extra round trip is spent on the chain.
The price is that a process's write transactions commit one after another; FHIR_AUDIT_CHAINS > 1
gives a process that many chains (each gapless, each verified), taken by whichever row finds one
free, so that its writes commit side by side again.
The head is anchored (an AuditCheckpoint row, in the row's transaction) with the chain's first row
and then every FHIR_AUDIT_ANCHOR_ROWS rows or FHIR_AUDIT_ANCHOR_SECONDS seconds.

Hash: HMAC-SHA256 under settings.FHIR_AUDIT_KEY (kept outside the database) over the previous hash
of the chain and the row's fields in a fixed order (`HASHED`), as compact JSON; `entry_hash` is
the one definition that writing and verifying share.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.utils import timezone
from django.utils.ipv6 import clean_ipv6_address

from authz.context import AccessContext

from .models import AuditCheckpoint, AuditEntry, AuditPatient

log = logging.getLogger(__name__)

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
    "rules_version",
    "filters",
    "outcome",
    "status",
    "reason",
    "client_ip",
    "user_agent",
)
# A search page can return thousands of resources; the row keeps the first ones and says so.
MAX_RESULTS = 2000


def entry_hash(prev_hash: str, fields: dict, key: bytes | None = None) -> str:
    """HMAC-SHA256, under the audit key (settings.FHIR_AUDIT_KEY unless `key` is given), of the
    previous row's hash and this row's `HASHED` fields as compact JSON."""
    values = [prev_hash] + [_plain(fields.get(name)) for name in HASHED]
    message = json.dumps(values, separators=(",", ":"), ensure_ascii=False).encode()
    mac = hmac.new(key, digestmod=hashlib.sha256) if key is not None else _keyed().copy()
    mac.update(message)
    return mac.hexdigest()


_keyed_cache: tuple[str, hmac.HMAC | None] = ("", None)


def _keyed() -> hmac.HMAC:
    """An HMAC already keyed with settings.FHIR_AUDIT_KEY, to copy (cheaper than keying anew)."""
    global _keyed_cache
    text = settings.FHIR_AUDIT_KEY
    if _keyed_cache[0] is not text or _keyed_cache[1] is None:
        _keyed_cache = (text, hmac.new(text.encode(), digestmod=hashlib.sha256))
    return _keyed_cache[1]


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


# --- the chain of this process -------------------------------------------------------------------


class AuditUnavailable(RuntimeError):
    """The row could not be chained in time (another request held the chain too long)."""


@dataclass
class _Pending:
    """Rows appended by one thread whose transaction has not ended: the chain stays locked until it
    does, so no other row is chained onto a row that may still roll back."""

    thread: int
    token: object
    # The chain's head, and when it was last anchored, before the first of these rows.
    before: tuple[int, str, int, float]


class _Chain:
    """This process's chain: one for all of its threads (WSGI threads, an ASGI server's executor
    threads), appended to under `lock`. A new process (a restart, a forked worker) starts a new one."""

    def __init__(self) -> None:
        self.id = uuid.uuid4().hex
        self.pid = os.getpid()
        self.seq = 0
        self.hash = GENESIS
        self.anchored_seq = 0
        self.anchored_at = time.monotonic()
        self.lock = threading.Lock()
        self.pending: _Pending | None = None

    def state(self) -> tuple[int, str, int, float]:
        return self.seq, self.hash, self.anchored_seq, self.anchored_at

    def restore(self, state: tuple[int, str, int, float]) -> None:
        self.seq, self.hash, self.anchored_seq, self.anchored_at = state

    def held_by_me(self) -> bool:
        return self.pending is not None and self.pending.thread == threading.get_ident()

    def release(self, token: object | None = None) -> None:
        """End the pending rows (of `token`, or of the calling thread) and unlock the chain."""
        pending = self.pending
        if pending is None or (
            pending.token is not token if token is not None else pending.thread != threading.get_ident()
        ):
            return
        self.pending = None
        self.lock.release()


_chain = _Chain()
# More chains of this process, used only with FHIR_AUDIT_CHAINS > 1 while `_chain` is held.
_extra: list[_Chain] = []
_grow = threading.Lock()


def _current() -> _Chain:
    global _chain, _extra
    if _chain.pid != os.getpid():
        # A forked worker (gunicorn --preload) must not continue its parent's chains: both would
        # write the same seq numbers.
        _chain, _extra = _Chain(), []
    return _chain


def _held() -> _Chain | None:
    """The chain this thread holds with rows of a transaction that has not ended, if any."""
    if _current().held_by_me():
        return _chain
    for chain in _extra:
        if chain.held_by_me():
            return chain
    return None


def _acquire() -> _Chain:
    """Lock a chain of this process for the next row. With FHIR_AUDIT_CHAINS = 1 (the default)
    every row waits for the one chain; with more, a row takes a free chain, or starts one while
    there are fewer than that, so write transactions of one process commit side by side."""
    first = _current()
    timeout = settings.FHIR_AUDIT_LOCK_TIMEOUT
    if settings.FHIR_AUDIT_CHAINS > 1:
        for chain in (first, *_extra):
            if chain.lock.acquire(blocking=False):
                return chain
        with _grow:
            if len(_extra) + 1 < settings.FHIR_AUDIT_CHAINS:
                chain = _Chain()
                chain.lock.acquire()
                _extra.append(chain)
                return chain
    if not first.lock.acquire(timeout=timeout):
        raise AuditUnavailable(f"The audit chain stayed locked for more than {timeout} s")
    return first


def undo_last() -> None:
    """The transaction holding this thread's last rows rolled back: the chain continues from the row
    before them, and other threads may append again."""
    chain = _held()
    if chain is not None:
        chain.restore(chain.pending.before)
        chain.release()


def settle() -> None:
    """This thread's last rows are durable (autocommit, or their transaction committed); other
    threads may chain onto them. Also done by an on-commit hook, so calling it twice is harmless."""
    chain = _held()
    if chain is not None:
        chain.release()


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
    """Write the request's row (and its patient index rows) as the next row of the process's chain.

    In autocommit the row is durable when this returns. Inside a transaction it is chained
    provisionally: the chain stays locked for other threads until the transaction ends, which the
    caller reports with `settle()` (committed; an on-commit hook does it too) or `undo_last()`
    (rolled back). Raises when the row cannot be written (the request must then fail)."""
    noted = notes(ctx)
    results = noted.results
    version = str(results[0][2]) if len(results) == 1 and results[0][2] is not None else ""
    fields = {
        "time": None,
        "request_id": ctx.request_id[:200],
        "chain": "",
        "seq": 0,
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
        "rules_version": _rules_version(ctx),
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
    pks = [pk for _t, _i, _v, pk in results if pk is not None]
    # The connection itself, not the `connection` proxy: each attribute of the proxy is a
    # context-local lookup, and the audit row is on every request's path.
    conn = connections[DEFAULT_DB_ALIAS]
    if conn.in_atomic_block:
        _append(conn, fields, pks)
        return
    if _held() is not None:
        # This thread's last rows were written in a transaction that has ended without its commit
        # hook running: it rolled back (and no one said so with undo_last). Their place is free.
        undo_last()
    try:
        if conn.vendor == "sqlite":
            # One writer at a time: a write holds the database's write lock when it comes to lock
            # the chain, so this row takes the database first too, or each would wait for the other
            # (the write on the chain, this row on the database) until the busy timeout. SQLite
            # transactions are IMMEDIATE (settings).
            with transaction.atomic():
                _append(conn, fields, pks)
        else:
            _append(conn, fields, pks)
    except BaseException:
        undo_last()
        raise
    settle()  # autocommit: the row is committed


def _append(conn, fields: dict, pks: list[int]) -> None:
    chain = _held()
    mine = chain is not None
    if chain is None:
        chain = _acquire()
    state = chain.state()
    in_transaction = conn.in_atomic_block
    try:
        fields["chain"], fields["seq"] = chain.id, chain.seq + 1
        fields["time"] = timezone.now()
        digest = entry_hash(chain.hash, fields)
        _insert(conn, {**fields, "prev_hash": chain.hash, "hash": digest}, pks)
        chain.seq, chain.hash = fields["seq"], digest
        now = time.monotonic()
        if (
            chain.anchored_seq == 0
            or chain.seq - chain.anchored_seq >= settings.FHIR_AUDIT_ANCHOR_ROWS
            or now - chain.anchored_at >= settings.FHIR_AUDIT_ANCHOR_SECONDS
        ):
            if in_transaction:
                _checkpoint(conn, chain.id, chain.seq, digest, fields["time"])
                chain.anchored_seq, chain.anchored_at = chain.seq, now
            else:
                # The row is committed already: a checkpoint that fails now is tried again with
                # the next row, and must not take the row's place in the chain back.
                try:
                    _checkpoint(conn, chain.id, chain.seq, digest, fields["time"])
                    chain.anchored_seq, chain.anchored_at = chain.seq, now
                except Exception:
                    log.exception("Could not anchor audit chain %s at seq %s", chain.id, chain.seq)
    except BaseException:
        chain.restore(state)
        if not mine:
            chain.lock.release()
        raise
    if mine:
        return
    if not in_transaction:
        chain.lock.release()  # autocommit: the row is committed, others may chain onto it
        return
    token = object()
    chain.pending = _Pending(threading.get_ident(), token, state)
    # Should the caller not report the end of the transaction, the commit still unlocks.
    transaction.on_commit(functools.partial(chain.release, token))


def _checkpoint(conn, chain: str, seq: int, digest: str, moment) -> None:
    """Anchor the head just written, in the same transaction (or, in autocommit, right after it)."""
    table = AuditCheckpoint._meta.db_table
    insert = f"INSERT INTO {table} (chain, seq, hash, time, source)"
    if conn.vendor == "postgresql" and not conn.in_atomic_block:
        # After a read's row: committed asynchronously like it (WAL order keeps the row first).
        sql = f"{ASYNC_COMMIT} {insert} SELECT %s, %s, %s, %s, %s FROM async"
    else:
        sql = f"{insert} VALUES (%s, %s, %s, %s, %s)"
    with conn.cursor() as cursor:
        cursor.execute(
            sql, [chain, seq, digest, conn.ops.adapt_datetimefield_value(moment), AuditCheckpoint.WRITER]
        )


def _rules_version(ctx: AccessContext) -> int | None:
    """The version of the rule set that decided the request (authz.rules notes it on the context
    when the request first consults the rules; API tokens learn it at authentication). 0: the
    built-in default rules; None when no rule was consulted."""
    if ("rules-version",) not in ctx.cache:
        return None
    known = ctx.cache[("rules-version",)]
    return 0 if known is None else int(known)


_COLUMNS = (*HASHED, "prev_hash", "hash")
ASYNC_COMMIT = "WITH async AS (SELECT set_config('synchronous_commit', 'off', true) AS s)"


def _insert(conn, row: dict, pks: list[int]) -> None:
    """The entry and its patient index rows. Reads are audited in autocommit mode, so this is one
    statement on PostgreSQL (a data-modifying CTE) rather than a transaction of three round trips."""
    from resources.models import CompartmentMembership, Resource

    ops = conn.ops
    values = [
        ops.adapt_datetimefield_value(row[c])
        if c == "time"
        else ops.adapt_ipaddressfield_value(row[c])
        if c == "client_ip"
        else row[c]
        for c in _COLUMNS
    ]
    entry_table, patient_table = AuditEntry._meta.db_table, AuditPatient._meta.db_table
    columns = ", ".join(conn.ops.quote_name(c) for c in _COLUMNS)
    placeholders = ", ".join(["%s"] * len(_COLUMNS))
    insert = f"INSERT INTO {entry_table} ({columns}) VALUES ({placeholders}) RETURNING id"
    asynchronous = conn.vendor == "postgresql" and not conn.in_atomic_block
    if asynchronous:
        # The row of a read is a statement of its own; waiting for its WAL flush would make every
        # read pay a disk sync, so it commits asynchronously: a database crash may lose the last
        # few hundred milliseconds of read rows. A write's row commits with the write, synchronously.
        insert = f"INSERT INTO {entry_table} ({columns}) SELECT {placeholders} FROM async RETURNING id"
    prefix = ASYNC_COMMIT if asynchronous else ""
    if not pks:
        with conn.cursor() as cursor:
            cursor.execute(f"{prefix} {insert}", values)
        return
    marks = ", ".join(["%s"] * len(pks))
    patients = (
        f"SELECT compartment_id AS pid FROM {CompartmentMembership._meta.db_table} "
        f"WHERE compartment_type = 'Patient' AND resource_id IN ({marks}) "
        f"UNION SELECT fhir_id FROM {Resource._meta.db_table} WHERE resource_type = 'Patient' AND id IN ({marks})"
    )
    with conn.cursor() as cursor:
        if conn.vendor == "postgresql":
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
