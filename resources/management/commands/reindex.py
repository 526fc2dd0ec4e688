"""`manage.py reindex`: rebuild the search index and compartment rows of the current resources.

Needed when the search-parameter definitions or the row semantics change
(https://hl7.org/fhir/R4/search.html; the index is rows for the current version only). Resources
are read in primary-key order by keyset paging (`pk > last`, never OFFSET, which rescans what it
skips), and each batch is cleared and rewritten in one transaction, so searches running meanwhile
see every resource either with its old rows or with its new ones.
"""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from resources import fhirjson
from resources.definitions import resource_types
from resources.indexing import clear_index, index_resources
from resources.models import Resource

# Exit status for bad arguments, as argparse uses for usage errors.
USAGE = 2


def _positive(name: str, value: object) -> int:
    text = str(value).strip()
    if not text.isdigit() or int(text) < 1:
        raise CommandError(f"{name} must be an integer of at least 1, not {value!r}", returncode=USAGE)
    return int(text)


class Command(BaseCommand):
    help = (
        "Rebuild the search index rows and compartment memberships of every current (not deleted) "
        "resource, or of one resource type, from the stored bodies. Run it after the search-parameter "
        "definitions change. Progress goes to stderr (-v 0 silences it), the summary (resources/s) to "
        "stdout; exit status 2 for an unknown type or a bad option."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--type",
            metavar="T",
            dest="resource_type",
            help="Only resources of this FHIR resource type (e.g. Observation). Default: all types.",
        )
        parser.add_argument(
            "--batch-size",
            metavar="N",
            default="500",
            help="Resources per transaction (integer >= 1, default 500).",
        )

    def handle(self, *args, **options):
        resource_type = options["resource_type"]
        if resource_type is not None and resource_type not in resource_types():
            raise CommandError(f"Unknown resource type '{resource_type}'", returncode=USAGE)
        batch_size = _positive("--batch-size", options["batch_size"])

        current = Resource.objects.system("reindex").filter(deleted=False)
        if resource_type is not None:
            current = current.filter(resource_type=resource_type)
        total = current.count()
        progress = _Progress(self.stderr, total, enabled=options["verbosity"] > 0)
        done, last_pk = 0, 0
        while True:
            rows = list(
                current.filter(pk__gt=last_pk)
                .order_by("pk")
                .only("pk", "resource_type", "fhir_id", "body")[:batch_size]
            )
            if not rows:
                break
            items = [(row, fhirjson.loads(row.body)) for row in rows]
            with transaction.atomic():
                # Every table: rows of a parameter the definitions no longer have must go too.
                clear_index(rows, every_table=True)
                index_resources(items, fresh=True)
            done += len(rows)
            last_pk = rows[-1].pk
            progress.update(done)
        elapsed = progress.finish(done)
        rate = done / elapsed if elapsed > 0 else 0.0
        scope = f"{resource_type} resources" if resource_type else "resources"
        self.stdout.write(f"Reindexed {done} {scope} in {elapsed:.2f} s: {rate:.1f} resources/s")


class _Progress:
    """An in-place counter with the rate on a terminal; a line per tenth of the work otherwise."""

    def __init__(self, stream, total: int, *, enabled: bool):
        self.stream = stream
        self.total = total
        self.enabled = enabled and total > 0
        self.tty = stream.isatty()
        self.started = time.perf_counter()
        self.next_line = 0.1

    def _text(self, done: int) -> str:
        elapsed = time.perf_counter() - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        share = 100.0 * done / self.total if self.total else 100.0
        return f"  {done}/{self.total} resources ({share:.0f} %), {rate:.0f} resources/s"

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        if self.tty:
            self.stream.write("\r" + self._text(done), ending="")
            self.stream.flush()
        elif done >= self.total * self.next_line:
            self.stream.write(self._text(done))
            while done >= self.total * self.next_line:
                self.next_line += 0.1

    def finish(self, done: int) -> float:
        if self.enabled and self.tty:
            self.stream.write("")
        return time.perf_counter() - self.started
