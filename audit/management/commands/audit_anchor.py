"""`python manage.py audit_anchor [--file FILE]`

Anchors the head of every audit chain: a checkpoint row (audit/anchoring.py) recording the seq and
hash each chain has reached, so that rows cut off the end of a chain later show in audit_verify.
Run it periodically (cron, Celery beat); audit_verify does it too after a clean walk.

Exit status: 0 done (how many heads were anchored), 1 failed, 2 bad input.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from audit.anchoring import anchor, current_heads


class Command(BaseCommand):
    help = (
        "Anchor the head (seq and hash) of every audit chain, so that a deleted tail shows in audit_verify."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--file",
            metavar="FILE",
            default=None,
            help="Also append the new anchors to FILE, one JSON line each (default: the FHIR_AUDIT_ANCHOR_FILE "
            "setting, if set). Keep it out of reach of the database's users; audit_verify --anchors reads it.",
        )

    def handle(self, *args, **options):
        file = options["file"] or settings.FHIR_AUDIT_ANCHOR_FILE or None
        path = Path(file) if file else None
        if path is not None and (path.is_dir() or not path.parent.is_dir()):
            raise CommandError(f"--file: cannot append to {path}", returncode=2)
        try:
            written = anchor(current_heads(), file=path)
        except (OSError, DatabaseError) as exc:
            raise CommandError(f"Anchoring failed: {exc}", returncode=1) from exc
        where = f" (also in {path})" if path is not None and written else ""
        self.stdout.write(f"Anchored the heads of {len(written)} audit chains{where}")
