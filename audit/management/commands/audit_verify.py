"""`python manage.py audit_verify [--chain ID] [--archives DIR] [--anchors FILE] [--no-anchor]`

Walks every hash chain of the audit log (audit/verify.py): each chain from seq 1 and GENESIS, or
from its newest AuditAnchor once `audit_archive` moved its older rows to a file, up to at least
its newest checkpoint (and the heads in --anchors FILE). With --archives, also checks the archive
files in DIR and that files and database together account for every chain from its first row.
After a clean walk of every chain, anchors the heads it reached (as audit_anchor does), so that
a tail deleted after this run shows in the next one.

Exit status: 0 intact (rows and chains checked, rows/s), 1 broken (the first broken link: row id,
chain, seq and what is wrong), 2 bad input.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from audit import anchoring
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
        parser.add_argument(
            "--anchors",
            metavar="FILE",
            default=None,
            help="Also hold every chain to the heads recorded in FILE by audit_anchor --file (default: the "
            "FHIR_AUDIT_ANCHOR_FILE setting, if set and present).",
        )
        parser.add_argument(
            "--no-anchor",
            action="store_true",
            help="Do not anchor the verified heads afterwards (a read-only run).",
        )

    def handle(self, *args, **options):
        chain: str | None = options["chain"]
        archives = Path(options["archives"]) if options["archives"] else None
        if archives is not None and not archives.is_dir():
            raise CommandError(f"--archives: {archives} is not a directory", returncode=2)
        if chain is not None and not chain_exists(chain):
            raise CommandError(f"--chain: no audit rows or anchor for chain {chain}", returncode=2)

        anchor_file = options["anchors"] or settings.FHIR_AUDIT_ANCHOR_FILE or None
        anchored = None
        if anchor_file is not None:
            path = Path(anchor_file)
            if path.exists() or options["anchors"]:
                try:
                    anchored = anchoring.read_file(path)
                except (OSError, ValueError) as exc:
                    raise CommandError(f"--anchors: cannot read {path}: {exc}", returncode=2) from exc

        report = verify_database(chain, anchored=anchored, anchored_by=f"anchor file {anchor_file}")
        if report.broken is not None:
            raise CommandError(f"Audit log broken: {report.broken}", returncode=1)
        self.stdout.write(
            f"Audit log intact: {report.rows} rows in {report.chains} chains checked "
            f"in {report.seconds:.2f} s ({report.rate:,.0f} rows/s)"
        )
        if chain is None and not options["no_anchor"]:
            try:
                written = anchoring.anchor(report.heads, file=Path(anchor_file) if anchor_file else None)
            except (OSError, DatabaseError) as exc:
                raise CommandError(f"Verified, but anchoring the heads failed: {exc}", returncode=1) from exc
            if written:
                self.stdout.write(f"Anchored the heads of {len(written)} chains")
        if archives is None:
            return
        files = verify_archives(archives, chain=chain)
        if files.broken is not None:
            raise CommandError(f"Audit archive broken: {files.broken}", returncode=1)
        self.stdout.write(
            f"Archives intact: {files.rows} rows of {files.chains} chains in {files.files} files checked "
            f"in {files.seconds:.2f} s ({files.rate:,.0f} rows/s)"
        )
