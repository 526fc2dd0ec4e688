"""The audit log's hash chains: one row per request, tampering found and named (audit/verify.py,
`audit_verify`), the append-only guards (models.py, migration 0002), archiving to files with anchors
(audit/archive.py, `audit_archive`) and verifying those files, and chains of concurrent writers."""

from __future__ import annotations

import contextlib
import gzip
import itertools
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction
from django.test import Client
from django.utils import timezone

from audit import archive as archive_module
from audit import services
from audit.archive import ENTRY_COLUMNS
from audit.models import AuditAnchor, AuditEntry, AuditPatient
from audit.services import GENESIS
from authz.context import AccessContext
from conftest import bearer

pytestmark = pytest.mark.django_db

OLD = datetime(2020, 1, 1, tzinfo=UTC)
NEW = datetime(2024, 1, 1, tzinfo=UTC)
postgres_only = pytest.mark.skipif("connection.vendor != 'postgresql'", reason="the trigger is PostgreSQL's")


@pytest.fixture(autouse=True)
def fresh_chain(monkeypatch):
    """Each test writes its own chains from seq 1: a test's rolled-back rows must not leave the
    writer's chain pointing at rows that no longer exist."""
    monkeypatch.setattr(services, "_chain", services._Chain())


# --- helpers -------------------------------------------------------------------------------------


def run(command: str, *args: str) -> tuple[int, str]:
    """(exit status, output or error message) of a management command."""
    out = StringIO()
    try:
        call_command(command, *args, stdout=out, stderr=StringIO())
    except CommandError as exc:
        return exc.returncode, str(exc)
    return 0, out.getvalue()


@contextlib.contextmanager
def clock(start: datetime) -> Iterator[None]:
    """record() stamps its rows from this clock, a second apart."""
    ticks = itertools.count()
    fake = SimpleNamespace(now=lambda: start + timedelta(seconds=next(ticks)))
    with mock.patch.object(services, "timezone", fake):
        yield


def write(count: int, *, at: datetime | None = None) -> list[AuditEntry]:
    """`count` rows through record(), as a read of Patient/n each; the current chain's rows."""
    with clock(at) if at else contextlib.nullcontext():
        for n in range(count):
            services.record(
                AccessContext.system("tests"),
                http_method="GET",
                path=f"/fhir/Patient/{n}",
                operation="read",
                resource_type="Patient",
                resource_id=str(n),
                outcome="success",
                status=200,
                client_ip="127.0.0.1" if n % 2 else None,
                user_agent="pytest",
            )
    return list(AuditEntry.objects.filter(chain=services._chain.id).order_by("seq"))


def tamper(sql: str, params: list) -> None:
    """Run an UPDATE or DELETE behind the application's back; on PostgreSQL with the append-only
    trigger switched off for this transaction, as someone with the database's keys could."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL session_replication_role = replica")
        try:
            cursor.execute(sql, params)
        finally:
            if connection.vendor == "postgresql":
                cursor.execute("SET LOCAL session_replication_role = origin")


def archive_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("audit-*.ndjson.gz"))


def read_archive(path: Path) -> tuple[dict, list[dict]]:
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        header = json.loads(lines.readline())
        return header, [json.loads(line) for line in lines]


def rewrite_archive(path: Path, change) -> None:
    header, rows = read_archive(path)
    header, rows = change(header, rows)
    text = "".join(json.dumps(obj, separators=(",", ":")) + "\n" for obj in [header, *rows])
    path.write_bytes(gzip.compress(text.encode()))


# --- verification ----------------------------------------------------------------------------------


def test_verify_passes_on_a_fresh_log(fhir):
    status, output = run("audit_verify")
    assert status == 0 and "0 rows in 0 chains" in output

    patient = fhir.create({"resourceType": "Patient", "name": [{"family": "Fresh"}]})
    assert fhir.get(f"Patient/{patient['id']}").status_code == 200
    write(3)
    status, output = run("audit_verify")
    assert status == 0, output
    assert "5 rows in 1 chains" in output and "rows/s" in output


def _only_new_row(since: int) -> AuditEntry:
    rows = list(AuditEntry.objects.filter(id__gt=since))
    assert len(rows) == 1, rows
    return rows[0]


def _last_id() -> int:
    return AuditEntry.objects.order_by("-id").values_list("id", flat=True).first() or 0


def test_every_request_leaves_exactly_one_row_with_its_outcome(fhir):
    mark = _last_id()
    patient = fhir.create({"resourceType": "Patient", "name": [{"family": "Audited"}]})
    row = _only_new_row(mark)
    assert (row.outcome, row.status, row.http_method, row.operation, row.resource_type) == (
        "success",
        201,
        "POST",
        "create",
        "Patient",
    )
    assert row.role == "Admin" and row.results == f"Patient/{patient['id']}@1"

    mark = _last_id()
    assert fhir.get(f"Patient/{patient['id']}").status_code == 200
    row = _only_new_row(mark)
    assert (row.outcome, row.status, row.operation, row.resource_id) == (
        "success",
        200,
        "read",
        patient["id"],
    )
    # The read touched that patient's data: the row says whose.
    assert list(AuditPatient.objects.filter(entry=row).values_list("patient_id", flat=True)) == [
        patient["id"]
    ]

    mark = _last_id()
    assert fhir.get("Patient?family=Audited").status_code == 200
    row = _only_new_row(mark)
    assert (row.outcome, row.status, row.operation, row.query) == ("success", 200, "search", "family=Audited")

    mark = _last_id()
    assert Client().get("/fhir/Patient").status_code == 401
    row = _only_new_row(mark)
    assert (row.outcome, row.status, row.role) == ("denied", 401, "Public")

    mark = _last_id()
    response = fhir.post("Patient", {"resourceType": "Patient", "gender": "sometimes"})
    assert response.status_code == 400, response.content
    row = _only_new_row(mark)
    assert (row.outcome, row.status, row.operation) == ("failure", 400, "create")
    assert row.reason  # the OperationOutcome's diagnostics

    # The rolled-back write's row went with its transaction; the failure row took its place.
    assert run("audit_verify")[0] == 0


def test_a_changed_column_is_found_and_the_row_named():
    rows = write(5)
    tamper(
        f"UPDATE {AuditEntry._meta.db_table} SET path = %s WHERE id = %s", ["/fhir/Patient/other", rows[2].id]
    )
    status, message = run("audit_verify")
    assert status == 1
    assert f"row {rows[2].id} " in message and "content changed" in message
    assert f"chain {rows[2].chain}, seq 3" in message


def test_a_changed_time_or_status_is_found():
    rows = write(3)
    tamper(f"UPDATE {AuditEntry._meta.db_table} SET status = 403 WHERE id = %s", [rows[0].id])
    status, message = run("audit_verify")
    assert status == 1 and f"row {rows[0].id} " in message

    tamper(f"UPDATE {AuditEntry._meta.db_table} SET status = 200 WHERE id = %s", [rows[0].id])
    assert run("audit_verify")[0] == 0  # put back: intact again, so the hash covers exactly the row
    tamper(
        f"UPDATE {AuditEntry._meta.db_table} SET time = %s WHERE id = %s",
        [rows[1].time + timedelta(microseconds=1), rows[1].id],
    )
    status, message = run("audit_verify")
    assert status == 1 and f"row {rows[1].id} " in message and "content changed" in message


def test_a_rehashed_row_breaks_the_link_to_the_next():
    rows = write(4)
    changed = {name: getattr(rows[1], name) for name in services.HASHED} | {"reason": "nothing to see"}
    rehashed = services.entry_hash(rows[1].prev_hash, changed)
    tamper(
        f"UPDATE {AuditEntry._meta.db_table} SET reason = %s, hash = %s WHERE id = %s",
        ["nothing to see", rehashed, rows[1].id],
    )
    status, message = run("audit_verify")
    assert status == 1
    assert f"row {rows[2].id} " in message and "link broken" in message and "seq 3" in message


def test_a_deleted_middle_row_is_rows_missing():
    rows = write(5)
    tamper(f"DELETE FROM {AuditEntry._meta.db_table} WHERE id = %s", [rows[2].id])
    status, message = run("audit_verify")
    assert status == 1
    assert "rows missing" in message and f"row {rows[3].id} " in message and "seq 3 missing" in message


def test_a_deleted_first_row_is_rows_missing():
    rows = write(2)
    tamper(f"DELETE FROM {AuditEntry._meta.db_table} WHERE id = %s", [rows[0].id])
    status, message = run("audit_verify")
    assert status == 1 and "rows missing" in message and "after genesis" in message


def test_swapped_hashes_are_found():
    rows = write(4)
    table = AuditEntry._meta.db_table
    tamper(f"UPDATE {table} SET hash = %s WHERE id = %s", [rows[2].hash, rows[1].id])
    tamper(f"UPDATE {table} SET hash = %s WHERE id = %s", [rows[1].hash, rows[2].id])
    status, message = run("audit_verify")
    assert status == 1 and f"row {rows[1].id} " in message


def test_the_first_break_of_several_chains_is_reported_and_others_verify():
    first = write(3)
    services._chain = services._Chain()  # a second writer (the fixture restores the original)
    second = write(3)
    assert first[0].chain != second[0].chain
    status, output = run("audit_verify")
    assert status == 0 and "6 rows in 2 chains" in output
    assert "3 rows in 1 chains" in run("audit_verify", "--chain", second[0].chain)[1]

    victim = second if second[0].chain > first[0].chain else first  # the chain walked last
    tamper(f"UPDATE {AuditEntry._meta.db_table} SET identity = 'x' WHERE id = %s", [victim[1].id])
    status, message = run("audit_verify")
    assert status == 1 and f"row {victim[1].id} " in message
    other = first if victim is second else second
    assert run("audit_verify", "--chain", other[0].chain)[0] == 0


def test_bad_input_is_exit_2(tmp_path):
    write(1)
    assert run("audit_verify", "--chain", "no-such-chain")[0] == 2
    assert run("audit_verify", "--archives", str(tmp_path / "missing"))[0] == 2


@postgres_only
def test_the_database_refuses_update_and_delete():
    (row,) = write(1)
    table = AuditEntry._meta.db_table
    for sql in (f"UPDATE {table} SET status = 500 WHERE id = %s", f"DELETE FROM {table} WHERE id = %s"):
        with (
            pytest.raises(DatabaseError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(sql, [row.id])
    AuditPatient.objects.create(entry=row, patient_id="p1")
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(f"DELETE FROM {AuditPatient._meta.db_table}")
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(f"UPDATE {AuditPatient._meta.db_table} SET patient_id = 'p2'")
    assert AuditEntry.objects.get(id=row.id).status == 200


def test_the_queryset_refuses_update_and_delete():
    (row,) = write(1)
    for manager in (AuditEntry.objects, AuditPatient.objects):
        with pytest.raises(PermissionError):
            manager.all().update(id=1)
        with pytest.raises(PermissionError):
            manager.all().delete()
    row.status = 500
    with pytest.raises(PermissionError):
        row.save()
    assert AuditEntry.objects.get(id=row.id).status == 200


# --- archiving -----------------------------------------------------------------------------------


def test_archive_moves_the_old_rows_and_verify_starts_from_the_anchor(tmp_path):
    old = write(5, at=OLD)
    new = write(3, at=NEW)[5:]
    status, output = run("audit_archive", "--before", "2022-01-01", "--dir", str(tmp_path))
    assert status == 0, output
    assert "Archived 5 rows" in output and "rows/s" in output
    (path,) = archive_files(tmp_path)
    assert str(path) in output and path.name.startswith("audit-before-20220101T000000Z-at-")

    assert list(AuditEntry.objects.order_by("seq").values_list("id", flat=True)) == [r.id for r in new]
    anchor = AuditAnchor.objects.get()
    assert (anchor.chain, anchor.seq, anchor.hash, anchor.archive) == (
        old[0].chain,
        5,
        old[-1].hash,
        path.name,
    )

    status, output = run("audit_verify")
    assert status == 0 and "3 rows in 1 chains" in output
    write(2)  # the chain goes on after the archive
    assert run("audit_verify")[0] == 0
    assert run("audit_verify", "--archives", str(tmp_path))[0] == 0

    # Rows after the anchor are still guarded: losing the first of them is found.
    tamper(f"DELETE FROM {AuditEntry._meta.db_table} WHERE id = %s", [new[0].id])
    status, message = run("audit_verify")
    assert status == 1 and "rows missing" in message and "after the anchor at seq 5" in message


def test_a_fully_archived_chain_still_counts(tmp_path):
    write(3, at=OLD)
    assert run("audit_archive", "--before", "2021-01-01", "--dir", str(tmp_path))[0] == 0
    assert not AuditEntry.objects.exists()
    status, output = run("audit_verify", "--archives", str(tmp_path))
    assert status == 0 and "0 rows in 1 chains" in output and "3 rows of 1 chains in 1 files" in output


def test_archive_file_content(fhir, tmp_path):
    patient = fhir.create({"resourceType": "Patient", "name": [{"family": "Archived"}]})
    assert fhir.get(f"Patient/{patient['id']}").status_code == 200
    assert Client().get("/fhir/Patient").status_code == 401
    rows = list(AuditEntry.objects.order_by("seq"))
    patients_before = AuditPatient.objects.count()
    assert patients_before >= 1

    cutoff = (timezone.now() + timedelta(days=1)).replace(microsecond=0)
    status, output = run("audit_archive", "--before", cutoff.isoformat(), "--dir", str(tmp_path))
    assert status == 0, output
    (path,) = archive_files(tmp_path)
    assert path.read_bytes()[:2] == b"\x1f\x8b"  # gzip
    assert not list(tmp_path.glob("*.partial")) and not list(tmp_path.glob(".*"))

    header, archived = read_archive(path)
    assert header["archive"] == "audit" and header["before"] == cutoff.astimezone(UTC).isoformat()
    assert header["rows"] == len(rows) == len(archived) == 3
    assert header["chains"] == {
        rows[0].chain: {"from_seq": 1, "from_prev_hash": GENESIS, "to_seq": 3, "to_hash": rows[-1].hash}
    }
    assert [r["id"] for r in archived] == [r.id for r in rows]
    assert set(archived[0]) == {*ENTRY_COLUMNS, "patients"}
    first = archived[0]
    assert first["time"] == rows[0].time.astimezone(UTC).isoformat() and first["status"] == 201
    assert first["hash"] == rows[0].hash and first["prev_hash"] == GENESIS
    read = archived[1]
    assert [p["patient_id"] for p in read["patients"]] == [patient["id"]]
    assert archived[2]["outcome"] == "denied" and archived[2]["client_ip"] == rows[2].client_ip

    # Moved, not copied: the rows and their patient rows are gone from the database.
    assert not AuditEntry.objects.exists() and not AuditPatient.objects.exists()
    # Each row verifies on its own from the file, as the database had it.
    for row in archived:
        assert services.entry_hash(row["prev_hash"], row) == row["hash"]


def test_archives_are_verified_file_after_file(tmp_path):
    write(4, at=OLD)
    write(3, at=NEW)
    assert run("audit_archive", "--before", "2021-01-01", "--dir", str(tmp_path))[0] == 0
    assert run("audit_archive", "--before", "2025-01-01", "--dir", str(tmp_path))[0] == 0
    first, second = archive_files(tmp_path)
    assert read_archive(second)[0]["chains"].popitem()[1]["from_seq"] == 5
    assert AuditAnchor.objects.count() == 2
    write(1)
    status, output = run("audit_verify", "--archives", str(tmp_path))
    assert status == 0, output
    assert "1 rows in 1 chains" in output and "7 rows of 1 chains in 2 files" in output

    # Without the first file, the second's start is unaccounted for, and the first's anchor too.
    first.rename(tmp_path / "elsewhere.gz")
    status, message = run("audit_verify", "--archives", str(tmp_path))
    assert status == 1 and "archive missing" in message


def test_a_tampered_archive_is_found(tmp_path):
    rows = write(5, at=OLD)
    assert run("audit_archive", "--before", "2021-01-01", "--dir", str(tmp_path))[0] == 0
    (path,) = archive_files(tmp_path)
    original = path.read_bytes()

    def change_a_row(header, archived):
        archived[2]["identity"] = "Practitioner/someone-else"
        return header, archived

    rewrite_archive(path, change_a_row)
    assert run("audit_verify")[0] == 0  # the database alone cannot tell
    status, message = run("audit_verify", "--archives", str(tmp_path))
    assert status == 1
    assert "content changed" in message and f"row {rows[2].id} " in message and path.name in message

    def drop_a_row(header, archived):
        return header, archived[:2] + archived[3:]

    path.write_bytes(original)
    rewrite_archive(path, drop_a_row)
    status, message = run("audit_verify", "--archives", str(tmp_path))
    assert status == 1 and "rows missing" in message and f"row {rows[3].id} " in message

    def rewrite_everything(header, archived):
        # Consistent within the file, re-hashed from the first row on: the anchor in the database
        # no longer matches the file's end.
        prev = GENESIS
        for row in archived:
            row["user_agent"] = "forged"
            row["prev_hash"], row["hash"] = prev, services.entry_hash(prev, row)
            prev = row["hash"]
        header["chains"][rows[0].chain]["to_hash"] = prev
        return header, archived

    path.write_bytes(original)
    rewrite_archive(path, rewrite_everything)
    status, message = run("audit_verify", "--archives", str(tmp_path))
    assert status == 1 and "anchor mismatch" in message

    path.write_bytes(original[: len(original) // 2])  # truncated
    status, message = run("audit_verify", "--archives", str(tmp_path))
    assert status == 1 and "archive unreadable" in message

    path.write_bytes(original)
    assert run("audit_verify", "--archives", str(tmp_path))[0] == 0


def test_a_changed_anchor_is_found(tmp_path):
    write(3, at=OLD)
    write(1, at=NEW)
    assert run("audit_archive", "--before", "2021-01-01", "--dir", str(tmp_path))[0] == 0
    tamper(f"UPDATE {AuditAnchor._meta.db_table} SET hash = %s", ["f" * 64])
    status, message = run("audit_verify")
    assert status == 1 and "link broken" in message and "anchor at seq 3" in message


@pytest.mark.parametrize("before", ["yesterday", "2026-13-01", "2026-01-01T25:00:00Z", "", "01/02/2026"])
def test_a_bad_cutoff_is_exit_2_and_writes_nothing(tmp_path, before):
    write(2, at=OLD)
    directory = tmp_path / "archive"
    status, message = run("audit_archive", "--before", before, "--dir", str(directory))
    assert status == 2 and "--before" in message
    assert not directory.exists()
    assert AuditEntry.objects.count() == 2 and not AuditAnchor.objects.exists()


def test_cutoff_formats():
    assert archive_module.parse_cutoff("2026-02-03") == datetime(2026, 2, 3, tzinfo=UTC)
    assert archive_module.parse_cutoff("2026-02-03T10:00:00Z") == datetime(2026, 2, 3, 10, tzinfo=UTC)
    assert archive_module.parse_cutoff("2026-02-03T12:00:00+02:00") == datetime(2026, 2, 3, 10, tzinfo=UTC)
    assert archive_module.parse_cutoff("2026-02-03T10:00:00") == datetime(2026, 2, 3, 10, tzinfo=UTC)


def test_nothing_to_archive_is_exit_0_without_a_file(tmp_path):
    write(2, at=NEW)
    status, output = run("audit_archive", "--before", "2021-01-01", "--dir", str(tmp_path))
    assert status == 0 and "nothing to archive" in output
    assert list(tmp_path.iterdir()) == []
    assert AuditEntry.objects.count() == 2


def test_a_failed_delete_removes_the_file_and_keeps_the_rows(tmp_path, monkeypatch):
    rows = write(3, at=OLD)

    def fail(*args, **kwargs):
        raise DatabaseError("disk full")

    # The deletes (and, on PostgreSQL, the anchors) have run when the count check fails: the
    # transaction must take them back.
    monkeypatch.setattr(archive_module, "_check_counts", fail)
    status, message = run("audit_archive", "--before", "2021-01-01", "--dir", str(tmp_path))
    assert status == 1 and "disk full" in message
    assert list(tmp_path.iterdir()) == []
    assert list(AuditEntry.objects.order_by("seq")) == rows and not AuditAnchor.objects.exists()
    assert run("audit_verify")[0] == 0


def test_a_broken_chain_is_not_archived(tmp_path):
    rows = write(4, at=OLD)
    tamper(f"DELETE FROM {AuditEntry._meta.db_table} WHERE id = %s", [rows[1].id])
    status, message = run("audit_archive", "--before", "2021-01-01", "--dir", str(tmp_path))
    assert status == 1 and "rows missing" in message
    assert list(tmp_path.iterdir()) == []
    assert AuditEntry.objects.count() == 3 and not AuditAnchor.objects.exists()


def test_rows_before_the_cutoff_must_be_a_prefix_of_their_chain(tmp_path):
    write(2, at=NEW)
    write(2, at=OLD)  # a clock that went back: seq 3 and 4 are older than seq 1 and 2
    status, message = run("audit_archive", "--before", "2021-01-01", "--dir", str(tmp_path))
    assert status == 1 and "prefix" in message
    assert list(tmp_path.iterdir()) == [] and AuditEntry.objects.count() == 4


def test_every_option_has_help():
    from audit.management.commands import audit_archive, audit_verify

    for module, name in ((audit_verify, "audit_verify"), (audit_archive, "audit_archive")):
        parser = module.Command().create_parser("manage.py", name)
        ours = [a for a in parser._actions if a.dest in ("chain", "archives", "before", "dir")]
        assert ours and all(a.help for a in ours)


# --- concurrent writers --------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_share_the_process_chain_and_verify(tmp_path):
    token = bearer("Admin")
    patient = Client(headers={"Authorization": token}).post(
        "/fhir/Patient", {"resourceType": "Patient"}, content_type="application/fhir+json"
    )
    assert patient.status_code == 201
    url = f"/fhir/Patient/{patient.json()['id']}"
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []
    statuses: list[int] = []

    def requests() -> None:
        try:
            client = Client(headers={"Authorization": token})
            barrier.wait()
            for n in range(6):
                if n % 3 == 2:
                    response = client.post(
                        "/fhir/Patient", {"resourceType": "Patient"}, content_type="application/fhir+json"
                    )
                else:
                    response = client.get(url if n % 3 == 0 else "/fhir/Patient?_count=5")
                statuses.append(response.status_code)
        except BaseException as exc:  # asserted on below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=requests) for _ in range(3)]
    for thread in threads:
        thread.start()
    barrier.wait()
    # An archive run in the middle of the writing: rows keep coming while it moves the older ones.
    archived = run(
        "audit_archive", "--before", (timezone.now() + timedelta(days=1)).isoformat(), "--dir", str(tmp_path)
    )
    for thread in threads:
        thread.join()
    assert errors == [] and archived[0] == 0, (errors, archived)
    assert sorted(set(statuses)) == [200, 201] and len(statuses) == 18

    chains = set(AuditEntry.objects.values_list("chain", flat=True)) | set(
        AuditAnchor.objects.values_list("chain", flat=True)
    )
    # One chain for the process: every thread's rows, reads and writes, in one sequence.
    assert chains == {services._chain.id}
    status, output = run("audit_verify", "--archives", str(tmp_path))
    assert status == 0, output
    archived_rows = sum(len(read_archive(p)[1]) for p in archive_files(tmp_path))
    assert archived_rows + AuditEntry.objects.count() == 19
