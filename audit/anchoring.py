"""Anchoring chain heads: a checkpoint row per chain recording the seq and hash it has reached.

Implements `python manage.py audit_anchor` and the anchoring step that `audit_verify` runs after a
successful walk. The writing process anchors its own chain as it goes (services.py); this anchors
every chain from outside, which also covers a process that stopped writing (an idle or exited
server, whose last rows no later row refers to). Meant to run periodically (cron, Celery beat):
rows written since a chain's newest checkpoint are the only ones that can go missing unnoticed.

With `--file`, each checkpoint is also appended as one JSON line to a file, best kept where the
database's users cannot write (another host, an append-only store): `audit_verify --anchors FILE`
then holds the database to those heads even if someone able to bypass the database's guards
removed both rows and checkpoints.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from django.db import transaction
from django.utils import timezone

from .models import AuditCheckpoint, AuditEntry
from .verify import latest_anchors, latest_checkpoints


def current_heads(using: str = "default") -> dict[str, tuple[int, str]]:
    """chain -> (seq, hash) of its newest row in the database, for every chain that has a
    checkpoint or an archive anchor (every chain does from its first row on: the writer anchors
    it). One index probe per chain, from where the chain was last anchored, rather than a scan of
    the log; `audit_verify` anchors every chain it walks, whatever its checkpoints."""
    starts = {chain: anchor[0] for chain, anchor in latest_anchors(using).items()}
    for chain, point in latest_checkpoints(using).items():
        starts[chain] = max(starts.get(chain, 0), point.seq)
    heads: dict[str, tuple[int, str]] = {}
    rows = AuditEntry.objects.using(using)
    for chain, start in sorted(starts.items()):
        newest = rows.filter(chain=chain, seq__gte=start).order_by("-seq").values_list("seq", "hash").first()
        if newest is not None:
            heads[chain] = newest
    return heads


def anchor(
    heads: Mapping[str, tuple[int, str]], *, file: Path | None = None, using: str = "default"
) -> list[AuditCheckpoint]:
    """Record a checkpoint for every head beyond its chain's newest checkpoint (and archive anchor);
    the checkpoints written, also appended to `file` when given."""
    known = latest_checkpoints(using)
    archived = latest_anchors(using)
    now = timezone.now()
    fresh = [
        AuditCheckpoint(chain=chain, seq=seq, hash=digest, time=now, source=AuditCheckpoint.COMMAND)
        for chain, (seq, digest) in sorted(heads.items())
        if seq
        > max(known[chain].seq if chain in known else 0, archived[chain][0] if chain in archived else 0)
    ]
    if not fresh:
        return []
    with transaction.atomic(using=using):
        AuditCheckpoint.objects.using(using).bulk_create(fresh, batch_size=500)
    if file is not None:
        append_to_file(file, fresh)
    return fresh


def append_to_file(path: Path, points: Iterable[AuditCheckpoint]) -> None:
    lines = "".join(
        json.dumps(
            {"chain": p.chain, "seq": p.seq, "hash": p.hash, "time": p.time.isoformat()},
            separators=(",", ":"),
        )
        + "\n"
        for p in points
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as out:
        out.write(lines)
        out.flush()
        os.fsync(out.fileno())


def read_file(path: Path) -> dict[str, tuple[int, str]]:
    """chain -> (seq, hash) of its furthest head in an anchor file; ValueError on a bad line."""
    heads: dict[str, tuple[int, str]] = {}
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                point = json.loads(line)
                chain, seq, digest = point["chain"], point["seq"], point["hash"]
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"line {number} is not an anchor: {exc}") from None
            if not (isinstance(chain, str) and isinstance(seq, int) and isinstance(digest, str)):
                raise ValueError(f"line {number} is not an anchor")
            if chain not in heads or seq > heads[chain][0]:
                heads[chain] = (seq, digest)
    return heads
