"""`python manage.py audit_verify [--chain ID] [--archives DIR]`

Walks every hash chain of the audit log (audit/verify.py): each chain from seq 1 and GENESIS, or
from its newest AuditAnchor once `audit_archive` moved its older rows to a file. With --archives,
also checks the archive files in DIR and that files and database together account for every
chain from its first row.

Exit status: 0 intact (rows and chains checked, rows/s), 1 broken (the first broken link: row id,
chain, seq and what is wrong), 2 bad input.
"""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from audit.verify import chain_exists, verify_archives, verify_database


class Command(BaseCommand):
    help = "Verify the audit log's hash chains (and, with --archives, the archive files). Exit 0 intact, 1 broken, 2 bad input."

    def add_arguments(self, parser):
        parser.add_argument(
            "--chain",
            metavar="ID",
            default=None,
            help="Verify only this chain (the `chain` column of the audit rows).",
        )
        parser.add_argument(
            "--archives",
            metavar="DIR",
            default=None,
            help="Also verify the audit_archive files in DIR: each file's chains from its start to its end "
            "anchor, the files linking up from seq 1, and each end anchor matching the database's.",
        )

    def handle(self, *args, **options):
        chain: str | None = options["chain"]
        archives = Path(options["archives"]) if options["archives"] else None
        if archives is not None and not archives.is_dir():
            raise CommandError(f"--archives: {archives} is not a directory", returncode=2)
        if chain is not None and not chain_exists(chain):
            raise CommandError(f"--chain: no audit rows or anchor for chain {chain}", returncode=2)

        report = verify_database(chain)
        if report.broken is not None:
            raise CommandError(f"Audit log broken: {report.broken}", returncode=1)
        self.stdout.write(
            f"Audit log intact: {report.rows} rows in {report.chains} chains checked "
            f"in {report.seconds:.2f} s ({report.rate:,.0f} rows/s)"
        )
        if archives is None:
            return
        files = verify_archives(archives, chain=chain)
        if files.broken is not None:
            raise CommandError(f"Audit archive broken: {files.broken}", returncode=1)
        self.stdout.write(
            f"Archives intact: {files.rows} rows of {files.chains} chains in {files.files} files checked "
            f"in {files.seconds:.2f} s ({files.rate:,.0f} rows/s)"
        )
