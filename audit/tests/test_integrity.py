"""What the audit log's integrity rests on (issue 10, item 11): one chain per process whatever the
threads, appends serialised so that a rolled-back write leaves no hole, a keyed hash, anchored
heads so that a deleted tail shows, the rule-set version of each row, and on PostgreSQL a trigger
and privileges that only the archiving function gets past."""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid

import pytest
from django.db import DatabaseError, connection, transaction

from audit import services
from audit.models import AuditAnchor, AuditCheckpoint, AuditEntry
from audit.roles import grants
from audit.services import HASHED, entry_hash
from audit.tests.test_chain import OLD, postgres_only, run, tamper, write
from authz.context import AccessContext
from authz.models import RuleSetVersion

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_chain(monkeypatch):
    monkeypatch.setattr(services, "_chain", services._Chain())


def record(path: str = "/fhir/Patient", ctx: AccessContext | None = None) -> None:
    services.record(
        ctx or AccessContext.system("tests"),
        http_method="GET",
        path=path,
        operation="search",
        outcome="success",
        status=200,
    )


def seqs() -> list[int]:
    return list(
        AuditEntry.objects.filter(chain=services._chain.id).order_by("seq").values_list("seq", flat=True)
    )


# --- deletions ------------------------------------------------------------------------------------


def test_a_deleted_middle_row_is_found():
    rows = write(5)
    assert run("audit_verify")[0] == 0
    tamper(f"DELETE FROM {AuditEntry._meta.db_table} WHERE id = %s", [rows[2].id])
    status, message = run("audit_verify")
    assert status == 1 and "rows missing" in message and "seq 3 missing" in message


def test_a_deleted_tail_is_found_once_the_head_was_anchored():
    rows = write(4)
    status, output = run("audit_anchor")
    assert status == 0 and "1 audit chains" in output, output
    tamper(f"DELETE FROM {AuditEntry._meta.db_table} WHERE id = %s", [rows[-1].id])
    status, message = run("audit_verify")
    assert status == 1 and "seq 4..4 missing at the end of the chain" in message, message


def test_audit_verify_anchors_what_it_verified():
    rows = write(3)
    assert run("audit_verify")[0] == 0
    tamper(f"DELETE FROM {AuditEntry._meta.db_table} WHERE id IN (%s, %s)", [rows[1].id, rows[2].id])
    status, message = run("audit_verify")
    assert status == 1 and "seq 2..3 missing at the end" in message


def test_the_writer_anchors_its_first_row_and_then_every_n_rows(settings):
    settings.FHIR_AUDIT_ANCHOR_ROWS = 3
    write(7)
    anchored = AuditCheckpoint.objects.filter(chain=services._chain.id).order_by("seq")
    assert [(p.seq, p.source) for p in anchored] == [(1, "writer"), (4, "writer"), (7, "writer")]
    rows = {r.seq: r.hash for r in AuditEntry.objects.filter(chain=services._chain.id)}
    assert all(rows[p.seq] == p.hash for p in anchored)
    # Rows cut off after the last anchor of the writer: found.
    tamper(f"DELETE FROM {AuditEntry._meta.db_table} WHERE chain = %s AND seq >= 7", [services._chain.id])
    status, message = run("audit_verify")
    assert status == 1 and "seq 7..7 missing at the end" in message


def test_a_deleted_whole_chain_is_found():
    write(2)
    tamper(f"DELETE FROM {AuditEntry._meta.db_table} WHERE chain = %s", [services._chain.id])
    status, message = run("audit_verify")
    assert status == 1 and "it has no rows left" in message


def test_an_anchor_file_holds_heads_the_database_lost(tmp_path):
    rows = write(3)
    anchors = tmp_path / "anchors.ndjson"
    assert run("audit_anchor", "--file", str(anchors))[0] == 0
    assert json.loads(anchors.read_text().splitlines()[-1])["seq"] == 3
    # Someone able to bypass the trigger removes the tail and the checkpoints that name it.
    tamper(f"DELETE FROM {AuditEntry._meta.db_table} WHERE id = %s", [rows[-1].id])
    tamper(f"DELETE FROM {AuditCheckpoint._meta.db_table}", [])
    assert run("audit_verify", "--no-anchor")[0] == 0  # the database alone cannot tell
    status, message = run("audit_verify", "--anchors", str(anchors))
    assert status == 1 and "missing at the end" in message and "anchor file" in message
    assert run("audit_verify", "--anchors", str(tmp_path / "nope"))[0] == 2


def test_an_anchored_row_replaced_is_found():
    write(3)
    assert run("audit_anchor")[0] == 0
    tamper(f"UPDATE {AuditCheckpoint._meta.db_table} SET hash = %s WHERE seq = 3", ["a" * 64])
    status, message = run("audit_verify", "--no-anchor")
    assert status == 1 and "anchor mismatch" in message


# --- the key --------------------------------------------------------------------------------------


def _rechain(rows: list[AuditEntry], from_index: int, hasher) -> None:
    """Rewrite rows[from_index:] so that each links to the previous one under `hasher`."""
    table = AuditEntry._meta.db_table
    prev = rows[from_index - 1].hash if from_index else services.GENESIS
    for row in rows[from_index:]:
        fields = {name: getattr(row, name) for name in HASHED}
        digest = hasher(prev, fields)
        tamper(
            f"UPDATE {table} SET prev_hash = %s, hash = %s, status = %s WHERE id = %s",
            [prev, digest, row.status, row.id],
        )
        prev = digest


def _unkeyed(prev: str, fields: dict) -> str:
    values = [prev] + [services._plain(fields.get(name)) for name in HASHED]
    return hashlib.sha256(json.dumps(values, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()


@pytest.mark.parametrize(
    "hasher",
    [_unkeyed, lambda prev, fields: entry_hash(prev, fields, key=b"not-the-key-" * 4)],
    ids=["unkeyed sha256", "another key"],
)
def test_a_rewritten_chain_does_not_verify_without_the_key(hasher):
    rows = write(4)
    rows[1].status = 500  # the forger's change, with every hash after it recomputed
    _rechain(rows, 1, hasher)
    status, message = run("audit_verify", "--no-anchor")
    assert status == 1 and "content changed" in message and f"row {rows[1].id}" in message


def test_a_row_from_before_keyed_hashes_is_named_as_such_and_still_refused():
    rows = write(2)

    def old_style(prev: str, fields: dict) -> str:
        values = [prev] + [services._plain(fields.get(name)) for name in HASHED if name != "rules_version"]
        return hashlib.sha256(
            json.dumps(values, separators=(",", ":"), ensure_ascii=False).encode()
        ).hexdigest()

    _rechain(rows, 0, old_style)
    status, message = run("audit_verify", "--no-anchor")
    assert status == 1 and "predates keyed hashes" in message


def test_the_same_rewrite_with_the_key_would_verify():
    """The control for the test above: only the key stands between a forger and a clean walk."""
    rows = write(4)
    rows[1].status = 500
    _rechain(rows, 1, entry_hash)
    assert run("audit_verify", "--no-anchor")[0] == 0


def test_a_changed_key_fails_every_row(settings):
    write(2)
    settings.FHIR_AUDIT_KEY = "x" * 64
    status, message = run("audit_verify", "--no-anchor")
    assert status == 1 and "content changed" in message


# --- one chain per process ------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_threads_writing_concurrently_make_one_chain_that_verifies():
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            barrier.wait()
            for i in range(15):
                if i % 5 == 4:
                    # A write transaction: its row keeps the chain until the commit; one in two
                    # rolls back, and its row's place goes to the next row.
                    try:
                        with transaction.atomic():
                            record(f"/fhir/Patient/w{n}-{i}")
                            if i % 10 == 9:
                                raise RuntimeError("rolled back")
                    except RuntimeError:
                        services.undo_last()
                    else:
                        services.settle()
                else:
                    record(f"/fhir/Patient/r{n}-{i}")
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert set(AuditEntry.objects.values_list("chain", flat=True)) == {services._chain.id}
    # 15 requests a thread, one rolled back each: 14 rows, numbered without a gap.
    assert seqs() == list(range(1, 57))
    assert not AuditEntry.objects.filter(path__contains="w").filter(path__endswith="-9").exists()
    status, output = run("audit_verify")
    assert status == 0 and "56 rows in 1 chains" in output, output


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_write_does_not_break_the_chain():
    record("/fhir/first")
    holding, release = threading.Event(), threading.Event()
    waited: list[float] = []

    def writer() -> None:
        try:
            with transaction.atomic():
                record("/fhir/Patient/rolled-back")
                holding.set()
                release.wait(5)
                raise RuntimeError("the write fails after its row")
        except RuntimeError:
            services.undo_last()
        finally:
            connection.close()

    def reader() -> None:
        started = time.monotonic()
        record("/fhir/Patient/read-meanwhile")
        waited.append(time.monotonic() - started)
        connection.close()

    w = threading.Thread(target=writer)
    w.start()
    assert holding.wait(5)
    r = threading.Thread(target=reader)
    r.start()
    time.sleep(0.3)
    assert r.is_alive()  # it waits for the write's transaction to end before chaining its row
    release.set()
    w.join()
    r.join()
    assert waited and waited[0] >= 0.3
    assert list(AuditEntry.objects.order_by("seq").values_list("seq", "path")) == [
        (1, "/fhir/first"),
        (2, "/fhir/Patient/read-meanwhile"),
    ]
    assert run("audit_verify")[0] == 0


@pytest.mark.django_db(transaction=True)
def test_a_committed_write_unlocks_the_chain_even_without_settle():
    with transaction.atomic():
        record("/fhir/Patient/w")
        assert services._chain.pending is not None
    assert services._chain.pending is None  # the on-commit hook
    done = threading.Event()

    def other() -> None:
        record("/fhir/Patient/r")
        done.set()
        connection.close()

    threading.Thread(target=other).start()
    assert done.wait(5)
    assert seqs() == [1, 2]


@postgres_only  # on SQLite the row waits for the database's write lock first (busy timeout)
@pytest.mark.django_db(transaction=True)
def test_a_chain_held_too_long_fails_the_row_not_the_chain(settings):
    settings.FHIR_AUDIT_LOCK_TIMEOUT = 1
    holding, release = threading.Event(), threading.Event()

    def writer() -> None:
        with transaction.atomic():
            record("/fhir/Patient/slow")
            holding.set()
            release.wait(5)
        services.settle()
        connection.close()

    w = threading.Thread(target=writer)
    w.start()
    assert holding.wait(5)
    with pytest.raises(services.AuditUnavailable):
        record("/fhir/Patient/impatient")
    release.set()
    w.join()
    record("/fhir/Patient/later")
    assert list(AuditEntry.objects.order_by("seq").values_list("path", flat=True)) == [
        "/fhir/Patient/slow",
        "/fhir/Patient/later",
    ]


def test_a_forked_process_starts_its_own_chain():
    write(2)
    parent = services._chain.id
    services._chain.pid = -1  # as a forked worker sees its parent's chain
    record()
    assert services._chain.id != parent and seqs() == [1]


def test_a_new_process_starts_a_new_chain_that_verify_accounts_for():
    write(2)
    services._chain = services._Chain()  # a restart
    write(2)
    status, output = run("audit_verify")
    assert status == 0 and "4 rows in 2 chains" in output


# --- the rule-set version -------------------------------------------------------------------------


def test_each_row_records_the_rule_set_version_that_decided_it(fhir, tmp_path):
    fhir.get("Patient")
    loaded = RuleSetVersion.objects.first()
    assert AuditEntry.objects.latest("id").rules_version == (loaded.version if loaded else 0)
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        'rules:\n  - {name: admin-all, role: Admin, resource: "*", operation: "*", validator: Allowed}\n'
    )
    assert run("load_rules", str(rules))[0] == 0
    version = RuleSetVersion.objects.get().version
    fhir.get("Patient")
    row = AuditEntry.objects.latest("id")
    assert row.rule == "admin-all" and row.rules_version == version
    # The version is hashed with the row.
    tamper(f"UPDATE {AuditEntry._meta.db_table} SET rules_version = %s WHERE id = %s", [version + 1, row.id])
    assert "content changed" in run("audit_verify", "--no-anchor")[1]


def test_a_refused_credential_consulted_no_rule_set(anonymous):
    assert anonymous.get("Patient", headers={"Authorization": "Bearer fpt_forged"}).status_code == 401
    assert AuditEntry.objects.latest("id").rules_version is None


# --- PostgreSQL: the trigger, the function and the roles --------------------------------------------


@postgres_only
def test_a_plain_delete_is_refused_and_the_old_session_flag_no_longer_helps():
    rows = write(2)
    write_checkpoint = AuditCheckpoint.objects.filter(chain=services._chain.id).get()
    for table, pk in (
        (AuditEntry._meta.db_table, rows[0].id),
        (AuditCheckpoint._meta.db_table, write_checkpoint.id),
    ):
        for prelude in ("", "SET LOCAL audit.archiving = 'on'"):
            for sql in (f"DELETE FROM {table} WHERE id = %s", f"UPDATE {table} SET seq = 9 WHERE id = %s"):
                with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
                    with connection.cursor() as cursor:
                        if prelude:
                            cursor.execute(prelude)
                        cursor.execute(sql, [pk])
    assert AuditEntry.objects.filter(chain=services._chain.id).count() == 2


@postgres_only
def test_a_function_of_the_same_name_does_not_open_the_table():
    (row,) = write(1)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                "CREATE FUNCTION pg_temp.audit_archive_delete(a text, b jsonb) RETURNS int "
                "LANGUAGE plpgsql AS $$ BEGIN DELETE FROM audit_auditentry WHERE id = (b->>'id')::bigint; "
                "RETURN 1; END $$"
            )
            cursor.execute(
                "SELECT pg_temp.audit_archive_delete('x', %s::jsonb)", [json.dumps({"id": row.id})]
            )


@postgres_only
def test_the_archive_function_removes_only_a_prefix_and_always_anchors():
    rows = write(4, at=OLD)
    chain = services._chain.id

    def call(ranges: list[dict]) -> tuple[int, int]:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "SELECT * FROM audit_archive_delete(%s, %s::jsonb)", ["file.ndjson.gz", json.dumps(ranges)]
            )
            return cursor.fetchone()

    middle = {"chain": chain, "from_seq": 2, "to_seq": 3, "to_hash": rows[2].hash}
    with pytest.raises(DatabaseError, match="oldest rows"):
        call([middle])
    with pytest.raises(DatabaseError, match="not the archived one"):
        call([{"chain": chain, "from_seq": 1, "to_seq": 2, "to_hash": "0" * 64}])
    assert call([{"chain": chain, "from_seq": 1, "to_seq": 2, "to_hash": rows[1].hash}]) == (2, 0)
    assert seqs() == [3, 4]
    anchor = AuditAnchor.objects.get(chain=chain)
    assert (anchor.seq, anchor.hash, anchor.archive) == (2, rows[1].hash, "file.ndjson.gz")
    assert run("audit_verify", "--no-anchor")[0] == 0


@postgres_only
def test_an_application_role_that_does_not_own_the_tables_appends_but_cannot_remove():
    role = f"fhir_audit_test_{uuid.uuid4().hex[:8]}"
    with connection.cursor() as cursor:
        # Inside the test's transaction: the role and its grants go with the rollback.
        cursor.execute(f"CREATE ROLE {role} NOLOGIN")
        for statement in grants(role):
            cursor.execute(statement)
        cursor.execute(f"SET LOCAL ROLE {role}")
    try:
        write(3)  # rows, patient rows and the writer's checkpoint, as the application role
        assert run("audit_verify")[0] == 0  # and it can verify and anchor
        table = AuditEntry._meta.db_table
        for sql in (
            f"DELETE FROM {table}",
            f"UPDATE {table} SET status = 1",
            f"TRUNCATE {table}",
            f"ALTER TABLE {table} DISABLE TRIGGER ALL",
            f"INSERT INTO {AuditAnchor._meta.db_table} (chain, seq, hash, archive, created) VALUES ('c', 1, 'h', 'a', now())",
            "SELECT * FROM audit_archive_delete('a', '[]'::jsonb)",
            "SET LOCAL session_replication_role = replica",
        ):
            with pytest.raises(DatabaseError, match="permission denied|must be owner"), transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute(sql)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET ROLE")
    assert AuditEntry.objects.count() == 3


def test_audit_db_roles_refuses_bad_input():
    status, message = run("audit_db_roles", "--app-role", "x; DROP TABLE y")
    assert status == 2
    if connection.vendor == "postgresql":
        status, output = run("audit_db_roles", "--app-role", "fhir_app", "--archiver-role", "fhir_archiver")
        assert status == 0 and "REVOKE UPDATE, DELETE, TRUNCATE" in output
        assert (
            'GRANT EXECUTE ON FUNCTION "public".audit_archive_delete(text, jsonb) TO "fhir_archiver"'
            in output
        )
    else:
        assert "PostgreSQL only" in message


@postgres_only
def test_an_archiver_role_archives_through_the_function(tmp_path):
    write(3, at=OLD)
    app, archiver = (f"fhir_audit_test_{uuid.uuid4().hex[:8]}" for _ in range(2))
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {app} NOLOGIN")
        cursor.execute(f"CREATE ROLE {archiver} NOLOGIN")
        for statement in grants(app, archiver):
            cursor.execute(statement)
        cursor.execute(f"SET LOCAL ROLE {archiver}")
    try:
        status, output = run("audit_archive", "--before", "2021-01-01", "--dir", str(tmp_path))
        assert status == 0 and "Archived 3 rows" in output, output
        with pytest.raises(DatabaseError, match="permission denied"), transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(f"DELETE FROM {AuditEntry._meta.db_table}")
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET ROLE")
    assert run("audit_verify", "--archives", str(tmp_path))[0] == 0


@postgres_only
def test_migrate_grants_the_configured_roles(settings):
    from audit.apps import _apply_roles

    app = f"fhir_audit_test_{uuid.uuid4().hex[:8]}"
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {app} NOLOGIN")
    settings.FHIR_DB_APP_ROLE = app
    _apply_roles(sender=None)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT has_table_privilege(%s, 'audit_auditentry', 'INSERT'), "
            "has_table_privilege(%s, 'audit_auditentry', 'DELETE'), "
            "has_table_privilege(%s, 'resources_resource', 'UPDATE')",
            [app, app, app],
        )
        assert cursor.fetchone() == (True, False, True)


@pytest.mark.django_db(transaction=True)
def test_a_rollback_nobody_reported_is_noticed_by_the_threads_next_row():
    record("/fhir/first")
    with pytest.raises(RuntimeError), transaction.atomic():
        record("/fhir/Patient/rolled-back")
        raise RuntimeError("no undo_last() after this")
    record("/fhir/Patient/next")
    assert list(AuditEntry.objects.order_by("seq").values_list("seq", "path")) == [
        (1, "/fhir/first"),
        (2, "/fhir/Patient/next"),
    ]
    assert services._chain.pending is None and run("audit_verify")[0] == 0


@pytest.mark.django_db(transaction=True)
def test_more_chains_per_process_let_write_transactions_commit_side_by_side(settings, monkeypatch):
    settings.FHIR_AUDIT_CHAINS = 2
    monkeypatch.setattr(services, "_extra", [])
    holding, release = threading.Event(), threading.Event()

    def writer() -> None:
        with transaction.atomic():
            record("/fhir/Patient/slow")
            holding.set()
            release.wait(5)
        services.settle()
        connection.close()

    w = threading.Thread(target=writer)
    w.start()
    assert holding.wait(5)
    started = time.monotonic()
    if connection.vendor == "postgresql":  # SQLite: the database itself has one writer at a time
        record("/fhir/Patient/meanwhile")
        assert time.monotonic() - started < 1  # did not wait for the writer's commit
    release.set()
    w.join()
    for n in range(3):
        record(f"/fhir/Patient/{n}")
    chains = AuditEntry.objects.values_list("chain", flat=True).distinct()
    assert 1 <= len(chains) <= 2
    for chain in chains:
        assert list(
            AuditEntry.objects.filter(chain=chain).order_by("seq").values_list("seq", flat=True)
        ) == list(range(1, AuditEntry.objects.filter(chain=chain).count() + 1))
    assert run("audit_verify")[0] == 0


def test_the_version_of_the_rules_a_request_consulted(tmp_path):
    """Callers whose credential did not bring the version (OAuth, JWTs): consulting the rules notes
    the version that decided, and the row records it; a request that consulted none records none."""
    from authz import rules as authz_rules

    rules = tmp_path / "rules.yaml"
    rules.write_text(
        'rules:\n  - {name: admin-all, role: Admin, resource: "*", operation: "*", validator: Allowed}\n'
    )
    assert run("load_rules", str(rules))[0] == 0
    version = RuleSetVersion.objects.get().version
    ctx = AccessContext(role="Admin")
    authz_rules.matching(ctx, "read", "Patient")
    record(ctx=ctx)
    assert AuditEntry.objects.latest("id").rules_version == version
    record(ctx=AccessContext(role="Admin"))
    assert AuditEntry.objects.latest("id").rules_version is None
