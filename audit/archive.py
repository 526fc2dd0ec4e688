"""Moving old audit rows out of the database into gzip-compressed NDJSON files, leaving anchors.

Implements `python manage.py audit_archive --before DATE [--dir DIR]`
(management/commands/audit_archive.py). One run writes one file, `audit-before-<cut-off>-at-
<timestamp>.ndjson.gz`:

    line 1   {"archive": "audit", "before": ..., "created": ..., "rows": N,
              "chains": {chain: {"from_seq", "from_prev_hash", "to_seq", "to_hash"}}}
    line 2.. one object per row, every column of AuditEntry, its AuditPatient rows as "patients"

The rows of a chain are written in seq order, so each chain in the file can be walked from its
start anchor (from_seq, from_prev_hash) to its end anchor (to_seq, to_hash); verify.check_file does.

Order of a run, so that a row is never only in neither place:
1. stream the rows with `time < before`, checking each chain as it goes (a broken chain is not
   archived: the break would be hidden behind a fresh anchor), and that they are a contiguous
   prefix of their chain;
2. write the file under a `.partial` name, fsync it, rename it, fsync the directory;
3. in ONE transaction: delete exactly those rows (and their patient rows, and the checkpoints the
   new anchors supersede), checking the counts, and record an AuditAnchor per chain (seq and hash
   of its last archived row, the file's name). On PostgreSQL this is the SECURITY DEFINER function
   `audit_archive_delete` (migration 0004), the only way past the append-only trigger, which
   itself refuses anything but a chain's oldest rows and always leaves the anchor;
4. if step 3 fails, remove the file (unless the anchors show that the transaction did commit).

Memory stays flat: rows stream through a server-side cursor in chunks, and the file's header,
which must come first but is only known at the end, is a separate gzip member written in front of
the already-compressed rows (a gzip file may hold several members; readers concatenate them).
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO

from django.db import connections, transaction
from django.utils import timezone

from .models import AuditAnchor, AuditCheckpoint, AuditEntry, AuditPatient
from .services import _plain
from .verify import CHUNK, ROWS_MISSING, ChainWalk, latest_anchors, snapshot

log = logging.getLogger(__name__)

# Every column of an entry, in the model's order: the file keeps the row whole.
ENTRY_COLUMNS = tuple(f.attname for f in AuditEntry._meta.concrete_fields)
# Chains per DELETE statement: two or three parameters each, well under SQLite's variable limit.
DELETE_BATCH = 200


class ArchiveError(Exception):
    """The run was refused or failed; nothing was deleted."""


@dataclass(frozen=True)
class ChainRange:
    chain: str
    from_seq: int
    from_prev_hash: str
    to_seq: int
    to_hash: str

    def header(self) -> dict:
        return {
            "from_seq": self.from_seq,
            "from_prev_hash": self.from_prev_hash,
            "to_seq": self.to_seq,
            "to_hash": self.to_hash,
        }


@dataclass
class ArchiveResult:
    path: Path | None
    before: datetime
    rows: int = 0
    patients: int = 0
    chains: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float(self.rows)


def parse_cutoff(text: str) -> datetime:
    """YYYY-MM-DD (midnight UTC) or an ISO 8601 instant (without an offset: UTC, the server's time
    zone); ValueError otherwise."""
    text = text.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"'{text}' is neither a date (YYYY-MM-DD) nor an ISO instant (2026-01-31T12:00:00Z)"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def file_name(before: datetime, now: datetime) -> str:
    cut = f"{before:%Y%m%dT%H%M%S}" + (f".{before:%f}" if before.microsecond else "") + "Z"
    return f"audit-before-{cut}-at-{now.astimezone(UTC):%Y%m%dT%H%M%S.%f}Z.ndjson.gz"


def archive(before: datetime, directory: Path, *, using: str = "default") -> ArchiveResult:
    """Move the rows older than `before` to one new file in `directory`; see the module docstring."""
    started = time.perf_counter()
    result = ArchiveResult(path=None, before=before)
    directory.mkdir(parents=True, exist_ok=True)
    name = file_name(before, timezone.now())
    path = directory / name
    partial = directory / f"{name}.partial"
    body = directory / f".{name}.rows.partial"
    try:
        with _create(body) as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as out:
            ranges, result.rows, result.patients = _stream(before, out, using)
        if not result.rows:
            return result
        header = {
            "archive": "audit",
            "before": before.isoformat(),
            "created": timezone.now().astimezone(UTC).isoformat(),
            "rows": result.rows,
            "chains": {r.chain: r.header() for r in ranges},
        }
        with _create(partial) as raw:
            raw.write(gzip.compress(_line(header), compresslevel=6, mtime=0))
            with open(body, "rb") as rows:
                shutil.copyfileobj(rows, raw, 1 << 20)
            raw.flush()
            os.fsync(raw.fileno())
        # A link, not a rename: fails rather than replace an existing archive of the same name.
        os.link(partial, path)
        _fsync_directory(directory)
    finally:
        for leftover in (body, partial):
            leftover.unlink(missing_ok=True)

    try:
        _delete_and_anchor(ranges, name, result.rows, result.patients, using)
    except BaseException:
        if _committed(name, using):
            raise
        path.unlink(missing_ok=True)
        _fsync_directory(directory)
        raise
    result.path = path
    result.chains = len(ranges)
    result.seconds = time.perf_counter() - started
    return result


def _stream(before: datetime, out: IO[bytes], using: str) -> tuple[list[ChainRange], int, int]:
    """Write the rows older than `before` to `out`; the chain ranges they cover, rows, patient rows."""
    ranges: list[ChainRange] = []
    rows = patients = 0
    with snapshot(using):
        anchors = latest_anchors(using)
        entries = (
            AuditEntry.objects.using(using)
            .filter(time__lt=before)
            .order_by("chain", "seq")
            .values_list(*ENTRY_COLUMNS)
            .iterator(chunk_size=CHUNK)
        )
        walk: ChainWalk | None = None
        for chunk in _chunks(entries, CHUNK):
            by_entry = _patients(using, [values[0] for values in chunk])
            lines = []
            for values in chunk:
                row = dict(zip(ENTRY_COLUMNS, values, strict=True))
                if walk is None or row["chain"] != walk.chain:
                    if walk is not None:
                        ranges.append(_range(walk))
                    walk = ChainWalk.from_anchor(row["chain"], anchors.get(row["chain"]))
                # Each chain's rows before the cut-off must be the next rows of the chain, unbroken:
                # seq and time grow together within a chain (one writer, one clock), so `time <
                # before` selects a prefix of what is left of it. A gap means deleted rows or a
                # clock that went back; either way the operator has to look before anything moves.
                broken = walk.check(row)
                if broken is not None:
                    hint = (
                        " (or the writer's clock went back, so that the rows before the cut-off are not "
                        "a prefix of the chain)"
                        if broken.kind == ROWS_MISSING
                        else ""
                    )
                    raise ArchiveError(f"not archiving: {broken}{hint}. Run audit_verify.")
                # The time as the hash saw it (UTC isoformat), so the file verifies on its own.
                row["time"] = _plain(row["time"])
                row["patients"] = by_entry.get(row["id"], [])
                patients += len(row["patients"])
                lines.append(_line(row))
            out.write(b"".join(lines))
            rows += len(chunk)
        if walk is not None:
            ranges.append(_range(walk))
    return ranges, rows, patients


def _range(walk: ChainWalk) -> ChainRange:
    # The walk started at its start anchor and now stands after the chain's last archived row.
    return ChainRange(walk.chain, walk.start_seq, walk.start_prev_hash, walk.last_seq, walk.prev_hash)


def _patients(using: str, entry_ids: list[int]) -> dict[int, list[dict]]:
    found: dict[int, list[dict]] = {}
    rows = (
        AuditPatient.objects.using(using)
        .filter(entry_id__in=entry_ids)
        .order_by("entry_id", "id")
        .values_list("entry_id", "id", "patient_id")
    )
    for entry_id, pk, patient_id in rows:
        found.setdefault(entry_id, []).append({"id": pk, "patient_id": patient_id})
    return found


def _delete_and_anchor(ranges: list[ChainRange], name: str, rows: int, patients: int, using: str) -> None:
    """Delete exactly the archived rows and leave the anchors, all or nothing."""
    conn = connections[using]
    with transaction.atomic(using=using), conn.cursor() as cursor:
        if conn.vendor == "postgresql":
            deleted, deleted_patients = _delete_through_function(cursor, ranges, name)
        else:
            deleted, deleted_patients = _delete_rows(cursor, conn, ranges)
            _anchor(ranges, name, using)
        _check_counts(deleted, deleted_patients, rows, patients)


def _delete_through_function(cursor, ranges: list[ChainRange], name: str) -> tuple[int, int]:
    """On PostgreSQL the append-only trigger (migration 0004) lets rows go only through
    `audit_archive_delete`, which deletes each chain's prefix and records its anchor itself."""
    deleted = deleted_patients = 0
    for batch in _chunks(ranges, DELETE_BATCH):
        payload = [
            {"chain": r.chain, "from_seq": r.from_seq, "to_seq": r.to_seq, "to_hash": r.to_hash}
            for r in batch
        ]
        cursor.execute(
            "SELECT entries, patients FROM audit_archive_delete(%s, %s::jsonb)", [name, json.dumps(payload)]
        )
        entries, patient_rows = cursor.fetchone()
        deleted += entries
        deleted_patients += patient_rows
    return deleted, deleted_patients


def _delete_rows(cursor, conn, ranges: list[ChainRange]) -> tuple[int, int]:
    """SQLite: raw SQL on purpose. The models' queryset refuses delete() so that nothing else in the
    application deletes audit rows by accident; this is the one place that does, after the rows are
    safely in the file. By (chain, seq range), not by time: rows written since the file was, even
    with an older time, stay."""
    qn = conn.ops.quote_name
    entries, patient_rows = qn(AuditEntry._meta.db_table), qn(AuditPatient._meta.db_table)
    checkpoints = qn(AuditCheckpoint._meta.db_table)
    deleted = deleted_patients = 0
    for batch in _chunks(ranges, DELETE_BATCH):
        where = " OR ".join(["(chain = %s AND seq BETWEEN %s AND %s)"] * len(batch))
        params = [value for r in batch for value in (r.chain, r.from_seq, r.to_seq)]
        cursor.execute(
            f"DELETE FROM {patient_rows} WHERE entry_id IN (SELECT id FROM {entries} WHERE {where})",
            params,
        )
        deleted_patients += cursor.rowcount
        cursor.execute(f"DELETE FROM {entries} WHERE {where}", params)
        deleted += cursor.rowcount
        # The anchor left behind supersedes the checkpoints of the rows it replaces.
        cursor.execute(
            f"DELETE FROM {checkpoints} WHERE " + " OR ".join(["(chain = %s AND seq <= %s)"] * len(batch)),
            [value for r in batch for value in (r.chain, r.to_seq)],
        )
    return deleted, deleted_patients


def _check_counts(deleted: int, deleted_patients: int, rows: int, patients: int) -> None:
    if (deleted, deleted_patients) != (rows, patients):
        # Another archive run got there first, or rows changed under us: the file and the
        # database would disagree, so nothing is kept.
        raise ArchiveError(
            f"expected to delete {rows} rows and {patients} patient rows, found {deleted} and "
            f"{deleted_patients}; nothing deleted (is another audit_archive running?)"
        )


def _anchor(ranges: list[ChainRange], name: str, using: str) -> None:
    """Where each chain continues (SQLite; on PostgreSQL the function records them)."""
    AuditAnchor.objects.using(using).bulk_create(
        [AuditAnchor(chain=r.chain, seq=r.to_seq, hash=r.to_hash, archive=name) for r in ranges],
        batch_size=500,
    )


def _committed(name: str, using: str) -> bool:
    """Whether the delete transaction committed after all (an error while committing is ambiguous).
    When even that cannot be told, the file stays: a file too many is reported by audit_verify
    --archives, a file too few would be rows lost."""
    try:
        return AuditAnchor.objects.using(using).filter(archive=name).exists()
    except Exception:
        log.exception("Cannot tell whether archive %s was committed; keeping the file", name)
        return True


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _line(obj: dict) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def _create(path: Path) -> IO[bytes]:
    # Exclusive: never overwrite an archive. Readable by the owner only: the log names patients.
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")


def _fsync_directory(directory: Path) -> None:
    """Make a rename or unlink durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
