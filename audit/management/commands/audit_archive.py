"""`python manage.py audit_archive --before DATE [--dir DIR]`

Moves the audit rows older than DATE to one gzip-compressed NDJSON file in DIR and leaves an
AuditAnchor per chain where the database continues (audit/archive.py). The file is written and
fsynced before the rows are deleted, in one transaction; if that fails, the file is removed.

Exit status: 0 archived (rows, file, rows/s) or nothing to archive (no file), 1 refused or failed
(a broken chain, a concurrent run; nothing deleted), 2 bad input (nothing written).
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from audit.archive import ArchiveError, archive, parse_cutoff


class Command(BaseCommand):
    help = "Move audit rows older than --before to a gzip NDJSON file, leaving an anchor per chain."

    def add_arguments(self, parser):
        parser.add_argument(
            "--before",
            required=True,
            metavar="DATE",
            help="Cut-off: rows with a time before it are archived. YYYY-MM-DD (midnight UTC) or an ISO "
            "instant such as 2026-01-31T12:00:00Z (no offset = UTC).",
        )
        parser.add_argument(
            "--dir",
            metavar="DIR",
            default=None,
            help="Directory of the archive files, created if missing (default: BASE_DIR/var/audit-archive).",
        )

    def handle(self, *args, **options):
        try:
            before = parse_cutoff(options["before"])
        except ValueError as exc:
            raise CommandError(f"--before: {exc}", returncode=2) from exc
        directory = (
            Path(options["dir"]) if options["dir"] else Path(settings.BASE_DIR) / "var" / "audit-archive"
        )
        if directory.exists() and not directory.is_dir():
            raise CommandError(f"--dir: {directory} is not a directory", returncode=2)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CommandError(f"--dir: cannot create {directory}: {exc}", returncode=2) from exc

        try:
            result = archive(before, directory)
        except ArchiveError as exc:
            raise CommandError(str(exc), returncode=1) from exc
        except (OSError, DatabaseError) as exc:
            raise CommandError(f"Archive failed, nothing deleted: {exc}", returncode=1) from exc
        if result.path is None:
            self.stdout.write(
                f"No audit rows before {before.isoformat()}: nothing to archive, no file written"
            )
            return
        self.stdout.write(
            f"Archived {result.rows} rows ({result.patients} patient rows) of {result.chains} chains "
            f"to {result.path} in {result.seconds:.2f} s ({result.rate:,.0f} rows/s)"
        )
