"""Verifying the audit log's hash chains, in the database and in the archive files.

Implements `python manage.py audit_verify` (management/commands/audit_verify.py). The chains are
defined in services.py: every process numbers its rows 1, 2, 3... in `seq`, each row carries the
previous row's hash in `prev_hash` and its own keyed hash `entry_hash(prev_hash, fields)` over
`HASHED`. A chain starts at seq 1 from GENESIS or, once `audit_archive` moved its older rows to a
file, at `anchor.seq + 1` from `anchor.hash` (models.AuditAnchor).

What a walk detects: a changed column (the row's HMAC no longer matches its content, and without
the key a forger cannot compute one that does), a changed or swapped hash (the next row's
`prev_hash` no longer matches, or the row's own hash does not), deleted rows (a gap in `seq`),
and rows cut off the end of a chain or a whole chain removed, up to the chain's newest checkpoint
(models.AuditCheckpoint: the chain must reach it, with the very row anchored there). What it
cannot detect: the rows written after a chain's newest checkpoint, if they are deleted too (the
writer anchors every FHIR_AUDIT_ANCHOR_ROWS rows or FHIR_AUDIT_ANCHOR_SECONDS; `audit_anchor` and
`audit_verify` anchor every head), and anything done by someone who holds the key and the
database's owner role; nor an anchor forged together with the deletion of the rows before it,
unless the archive files are checked too (`verify_archives`).

Walks stream: rows come ordered by (chain, seq) through a server-side cursor in chunks, and only
the current position of the chain being walked is kept, so memory does not grow with the table.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import time
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from django.db import connections, transaction

from .models import AuditAnchor, AuditCheckpoint, AuditEntry
from .services import GENESIS, HASHED, _plain, entry_hash

CHUNK = 2000
# The columns a walk needs: the row's id (to name it), both hashes, and what the hash covers.
COLUMNS = ("id", "prev_hash", "hash", *HASHED)
# Archive files as audit_archive names them; a `.partial` file is a run that did not finish.
ARCHIVE_GLOB = "audit-*.ndjson.gz"

CONTENT_CHANGED = "content changed"
LINK_BROKEN = "link broken"
ROWS_MISSING = "rows missing"
ARCHIVE_UNREADABLE = "archive unreadable"
ARCHIVE_MISSING = "archive missing"
ANCHOR_MISMATCH = "anchor mismatch"


@dataclass(frozen=True)
class Break:
    """The first place where a chain does not hold."""

    kind: str
    chain: str
    seq: int | None
    row_id: int | None
    detail: str
    source: str = "database"  # or the archive file's name
    row: str = ""  # a short description of the row, for the operator

    def __str__(self) -> str:
        where = f"row {self.row_id}" if self.row_id is not None else "chain"
        at = f"chain {self.chain}" + (f", seq {self.seq}" if self.seq is not None else "")
        described = f" [{self.row}]" if self.row else ""
        origin = "" if self.source == "database" else f" in archive {self.source}"
        return f"{self.kind}: {where} ({at}){origin}{described}: {self.detail}"


@dataclass
class Report:
    rows: int = 0
    chains: int = 0
    files: int = 0
    seconds: float = 0.0
    broken: Break | None = None
    # chain -> (seq, hash) of the last row walked: the heads `audit_verify` anchors afterwards.
    heads: dict[str, tuple[int, str]] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float(self.rows)


class ChainWalk:
    """Where one chain stands: the seq and the prev_hash its next row must have."""

    __slots__ = ("chain", "start_seq", "start_prev_hash", "next_seq", "prev_hash", "source")

    def __init__(self, chain: str, start_seq: int, prev_hash: str, source: str = "database") -> None:
        self.chain = chain
        self.start_seq = start_seq
        self.start_prev_hash = prev_hash
        self.next_seq = start_seq
        self.prev_hash = prev_hash
        self.source = source

    @classmethod
    def from_anchor(cls, chain: str, anchor: tuple[int, str] | None, source: str = "database") -> ChainWalk:
        if anchor is None:
            return cls(chain, 1, GENESIS, source)
        return cls(chain, anchor[0] + 1, anchor[1], source)

    def _origin(self) -> str:
        if self.next_seq != self.start_seq:
            return f"seq {self.next_seq - 1}"
        return "genesis" if self.start_seq == 1 else f"the anchor at seq {self.start_seq - 1}"

    def check(self, row: Mapping) -> Break | None:
        """The break this row makes, or None after moving the chain on past it."""
        seq = row["seq"]
        if seq != self.next_seq:
            if isinstance(seq, int) and seq > self.next_seq:
                missing = f"seq {self.next_seq}" + (f"..{seq - 1}" if seq - 1 > self.next_seq else "")
                return self._break(
                    ROWS_MISSING, row, f"{missing} missing before this row (after {self._origin()})"
                )
            if isinstance(seq, int) and seq < self.start_seq:
                return self._break(
                    LINK_BROKEN,
                    row,
                    f"seq {seq} is at or before the chain's anchor (seq {self.start_seq - 1}): "
                    "the row should have been archived, or the anchor was changed",
                )
            return self._break(LINK_BROKEN, row, f"seq {seq!r} does not follow {self._origin()}")
        if row["prev_hash"] != self.prev_hash:
            return self._break(LINK_BROKEN, row, f"its prev_hash is not the hash of {self._origin()}")
        if entry_hash(row["prev_hash"], row) != row["hash"]:
            detail = "its hash does not match its content under the audit key (a column was changed"
            if _unkeyed_hash(row["prev_hash"], row) == row["hash"]:
                # Still a break: anyone can compute this. But it is also what rows written before
                # hashes were keyed look like (docs/deployment.md, "Upgrading").
                detail += ", or the row predates keyed hashes: it carries an unkeyed SHA-256"
            return self._break(CONTENT_CHANGED, row, detail + ")")
        self.next_seq = seq + 1
        self.prev_hash = row["hash"]
        return None

    @property
    def last_seq(self) -> int:
        return self.next_seq - 1

    def _break(self, kind: str, row: Mapping, detail: str) -> Break:
        seq = row.get("seq")
        return Break(
            kind=kind,
            chain=self.chain,
            seq=seq if isinstance(seq, int) else None,
            row_id=row.get("id"),
            detail=detail,
            source=self.source,
            row=describe(row),
        )


def _unkeyed_hash(prev_hash: str, row: Mapping) -> str:
    """The hash of earlier versions (no key, no rules_version), to tell an old row from a forgery
    the operator should look at either way."""
    values = [prev_hash] + [_plain(row.get(name)) for name in HASHED if name != "rules_version"]
    return hashlib.sha256(json.dumps(values, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()


def describe(row: Mapping) -> str:
    """time, caller, method and path of a row: enough for an operator to find the request."""
    stamp = row.get("time")
    stamp = stamp.isoformat() if hasattr(stamp, "isoformat") else str(stamp or "")
    who = row.get("identity") or row.get("role") or ""
    return " ".join(
        str(part) for part in (stamp, who, row.get("http_method", ""), row.get("path", "")) if part
    )


@contextlib.contextmanager
def snapshot(using: str = "default") -> Iterator[None]:
    """One consistent view of the rows and the anchors for the length of a walk.

    On PostgreSQL a transaction does two things here: the named cursor behind `.iterator()` then
    streams instead of being materialised whole on the server at the implicit commit (WITH HOLD),
    and REPEATABLE READ makes the anchors and the rows come from the same snapshot, so an archive
    run committing mid-walk cannot look like missing rows. On SQLite, transactions are IMMEDIATE
    (settings) and would lock out every writer for the length of the walk, so each statement keeps
    its own snapshot there (a concurrent archive run can then cause a false alarm: walk again).
    """
    conn = connections[using]
    if conn.vendor != "postgresql":
        yield
        return
    outermost = not conn.in_atomic_block
    with transaction.atomic(using=using):
        if outermost:  # SET TRANSACTION must come first in the transaction; inside one, it is too late
            with conn.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield


def latest_anchors(using: str = "default", chain: str | None = None) -> dict[str, tuple[int, str]]:
    """chain -> (seq, hash) of its newest anchor: where its rows in the database start."""
    anchors = AuditAnchor.objects.using(using).order_by("chain", "seq")
    if chain is not None:
        anchors = anchors.filter(chain=chain)
    # Later anchors of a chain overwrite earlier ones; one entry per chain, not per row.
    return {
        c: (seq, digest) for c, seq, digest in anchors.values_list("chain", "seq", "hash").iterator(CHUNK)
    }


def latest_checkpoints(using: str = "default", chain: str | None = None) -> dict[str, Checkpoint]:
    """chain -> its newest checkpoint (the furthest head anchored)."""
    points = AuditCheckpoint.objects.using(using).order_by("chain", "seq", "id")
    if chain is not None:
        points = points.filter(chain=chain)
    return {
        c: Checkpoint(seq, digest, moment, source)
        for c, seq, digest, moment, source in points.values_list(
            "chain", "seq", "hash", "time", "source"
        ).iterator(CHUNK)
    }


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    hash: str
    time: object
    source: str

    def describe(self) -> str:
        if self.time is None:
            return f"anchored at seq {self.seq} in {self.source}"
        return f"anchored at seq {self.seq} on {self.time.isoformat()} ({self.source})"


def _short_tail(
    walk: ChainWalk | None, chain: str, point: Checkpoint, anchor: tuple[int, str] | None
) -> Break | None:
    """The break when the chain's rows stop before its newest checkpoint: rows cut off its end."""
    archived = anchor[0] if anchor is not None else 0
    if point.seq <= archived:
        return None  # the checkpoint's row has been archived; the archive anchor took its place
    last = walk.last_seq if walk is not None else archived
    if last >= point.seq:
        return None
    ends = f"its rows end at seq {last}" if last else "it has no rows left"
    return Break(
        ROWS_MISSING,
        chain,
        last + 1,
        None,
        f"seq {last + 1}..{point.seq} missing at the end of the chain: {ends}, but it was {point.describe()}",
    )


def verify_database(
    chain: str | None = None,
    using: str = "default",
    anchored: Mapping[str, tuple[int, str]] | None = None,
    anchored_by: str = "file",
) -> Report:
    """Walk every chain (or one) in the database; stop at the first break. Every chain must reach
    its newest checkpoint with the very row anchored there (rows cut off its end show);
    `anchored`: heads recorded elsewhere (an anchor file), held to the same standard."""
    report = Report()
    started = time.perf_counter()
    with snapshot(using):
        # Anchors and checkpoints before the rows: on SQLite, where each statement has its own
        # snapshot, rows written meanwhile are then only more rows, never missing ones.
        anchors = latest_anchors(using, chain)
        points = latest_checkpoints(using, chain)
        for name, (seq, digest) in (anchored or {}).items():
            if (chain is None or name == chain) and (name not in points or seq > points[name].seq):
                points[name] = Checkpoint(seq, digest, None, anchored_by)
        rows = AuditEntry.objects.using(using).order_by("chain", "seq").values_list(*COLUMNS)
        if chain is not None:
            rows = rows.filter(chain=chain)
        walk: ChainWalk | None = None
        seen: set[str] = set()

        def finish(walk: ChainWalk) -> Break | None:
            report.heads[walk.chain] = (walk.last_seq, walk.prev_hash)
            point = points.get(walk.chain)
            return _short_tail(walk, walk.chain, point, walk_anchor) if point else None

        walk_anchor = None
        for values in rows.iterator(chunk_size=CHUNK):
            row = dict(zip(COLUMNS, values, strict=True))
            if walk is None or row["chain"] != walk.chain:
                if walk is not None and (broken := finish(walk)) is not None:
                    report.broken = broken
                    break
                walk_anchor = anchors.get(row["chain"])
                walk = ChainWalk.from_anchor(row["chain"], walk_anchor)
                seen.add(row["chain"])
            report.rows += 1
            broken = walk.check(row)
            if broken is None:
                point = points.get(walk.chain)
                if point is not None and point.seq == row["seq"] and point.hash != row["hash"]:
                    broken = walk._break(
                        ANCHOR_MISMATCH, row, f"it is not the row {point.describe()} (another hash)"
                    )
            if broken is not None:
                report.broken = broken
                break
        else:
            if walk is not None:
                report.broken = finish(walk)
        if report.broken is None:
            # Chains with no rows left: all archived (their anchor says where they ended), or all
            # deleted (their checkpoint says they had rows).
            for name in sorted(set(points) - seen):
                broken = _short_tail(None, name, points[name], anchors.get(name))
                if broken is not None:
                    report.broken = broken
                    break
        report.chains = len(seen | set(anchors) | set(points)) if report.broken is None else len(seen)
    report.seconds = time.perf_counter() - started
    return report


def chain_exists(chain: str, using: str = "default") -> bool:
    return (
        AuditEntry.objects.using(using).filter(chain=chain).exists()
        or AuditAnchor.objects.using(using).filter(chain=chain).exists()
        or AuditCheckpoint.objects.using(using).filter(chain=chain).exists()
    )


# --- archive files -------------------------------------------------------------------------------


@dataclass
class Segment:
    """The part of one chain that one archive file holds, as its header declares it."""

    file: str
    from_seq: int
    from_prev_hash: str
    to_seq: int
    to_hash: str


@dataclass
class _FileCheck:
    rows: int = 0
    segments: dict[str, Segment] = field(default_factory=dict)
    broken: Break | None = None


def read_header(line: bytes | str, name: str) -> dict[str, Segment]:
    """The chains an archive file declares; ValueError when the header is not an audit archive's."""
    header = json.loads(line)
    if (
        not isinstance(header, dict)
        or header.get("archive") != "audit"
        or not isinstance(header.get("chains"), dict)
    ):
        raise ValueError("the first line is not an audit archive header")
    segments = {}
    for chain, bounds in header["chains"].items():
        segment = Segment(
            name, bounds["from_seq"], bounds["from_prev_hash"], bounds["to_seq"], bounds["to_hash"]
        )
        if not all(isinstance(v, int) for v in (segment.from_seq, segment.to_seq)) or not all(
            isinstance(v, str) for v in (segment.from_prev_hash, segment.to_hash)
        ):
            raise ValueError(f"the header's bounds of chain {chain} are malformed")
        segments[chain] = segment
    return segments


def check_file(path: Path) -> _FileCheck:
    """Each chain of the file runs unbroken from its start anchor to its end anchor (header)."""
    name = path.name
    result = _FileCheck()
    walks: dict[str, ChainWalk] = {}
    try:
        with gzip.open(path, "rb") as lines:
            result.segments = read_header(lines.readline(), name)
            walks = {
                chain: ChainWalk(chain, s.from_seq, s.from_prev_hash, name)
                for chain, s in result.segments.items()
            }
            for number, line in enumerate(lines, start=2):
                if not line.strip():
                    continue
                row = json.loads(line)
                walk = walks.get(row.get("chain")) if isinstance(row, dict) else None
                if walk is None:
                    raise ValueError(f"line {number} is not a row of a chain the header declares")
                result.rows += 1
                result.broken = walk.check(row)
                if result.broken is not None:
                    return result
    except (OSError, EOFError, zlib.error, ValueError, KeyError, TypeError, AttributeError) as exc:
        # A truncated or corrupt gzip stream, a line that is not JSON, a row without its columns.
        result.broken = Break(ARCHIVE_UNREADABLE, "-", None, None, f"{type(exc).__name__}: {exc}", name)
        return result
    for chain, segment in result.segments.items():
        walk = walks[chain]
        if walk.last_seq != segment.to_seq:
            result.broken = Break(
                ROWS_MISSING,
                chain,
                walk.last_seq,
                None,
                f"the file's rows end at seq {walk.last_seq}, its header says seq {segment.to_seq}",
                name,
            )
            return result
        if walk.prev_hash != segment.to_hash:
            result.broken = Break(
                LINK_BROKEN,
                chain,
                segment.to_seq,
                None,
                "the last row's hash is not the header's to_hash",
                name,
            )
            return result
    return result


def verify_archives(directory: Path, using: str = "default", chain: str | None = None) -> Report:
    """Check every archive file in `directory`, and that together with the database they tell each
    chain's whole story: from genesis, file after file (each starting where the previous one ended),
    to the anchor the database continues from; every anchor in the database has its file here."""
    report = Report()
    started = time.perf_counter()
    per_chain: dict[str, list[Segment]] = {}
    for path in sorted(directory.glob(ARCHIVE_GLOB)):
        checked = check_file(path)
        report.files += 1
        report.rows += checked.rows
        if checked.broken is not None:
            report.broken = checked.broken
            break
        for name, segment in checked.segments.items():
            if chain is None or name == chain:
                per_chain.setdefault(name, []).append(segment)
    if report.broken is None:
        report.broken = _check_continuity(per_chain, using, chain)
    report.chains = len(per_chain)
    report.seconds = time.perf_counter() - started
    return report


def _check_continuity(per_chain: dict[str, list[Segment]], using: str, chain: str | None) -> Break | None:
    anchors = AuditAnchor.objects.using(using).order_by("chain", "seq")
    if chain is not None:
        anchors = anchors.filter(chain=chain)
    by_key = {
        (c, seq): (digest, archive)
        for c, seq, digest, archive in anchors.values_list("chain", "seq", "hash", "archive").iterator(CHUNK)
    }
    for name, segments in sorted(per_chain.items()):
        segments.sort(key=lambda s: s.from_seq)
        expected = (1, GENESIS)
        for segment in segments:
            if (segment.from_seq, segment.from_prev_hash) != expected:
                if segment.from_seq > expected[0]:
                    kind, detail = (
                        ARCHIVE_MISSING,
                        f"no archive file holds seq {expected[0]}..{segment.from_seq - 1} (the file holding "
                        f"them is not in this directory, or they were removed)",
                    )
                else:
                    kind, detail = (
                        LINK_BROKEN,
                        f"the file starts at seq {segment.from_seq}, after seq {expected[0] - 1} does not link to it",
                    )
                return Break(kind, name, segment.from_seq, None, detail, segment.file)
            anchor = by_key.get((name, segment.to_seq))
            if anchor is None:
                return Break(
                    ANCHOR_MISMATCH,
                    name,
                    segment.to_seq,
                    None,
                    "the database has no anchor where this file ends: an archive run that did not "
                    "complete (its rows are still in the database; remove the file), or a removed anchor",
                    segment.file,
                )
            if anchor != (segment.to_hash, segment.file):
                return Break(
                    ANCHOR_MISMATCH,
                    name,
                    segment.to_seq,
                    None,
                    f"the database's anchor at this seq has hash {anchor[0][:12]}... and archive {anchor[1]}, "
                    f"the file ends at hash {segment.to_hash[:12]}...",
                    segment.file,
                )
            expected = (segment.to_seq + 1, segment.to_hash)
    # Every anchor must be the end of a file found here, or the rows before it are unaccounted for.
    ends = {(name, s.to_seq) for name, segments in per_chain.items() for s in segments}
    for (name, seq), (_digest, archive) in sorted(by_key.items()):
        if (name, seq) not in ends:
            return Break(
                ARCHIVE_MISSING,
                name,
                seq,
                None,
                f"the database's anchor at seq {seq} points at archive {archive}, which is not in this directory",
                archive,
            )
    return None
