"""`manage.py generate_demo_data`: write the deterministic demo data set through the service layer.

The reference data (Organizations, Practitioners, PractitionerRoles, CareTeams) goes first as one
transaction of PUTs; then each batch of patients is one transaction Bundle run by
`resources.transaction.process_bundle`, exactly as a client's POST to the base would be, so the
data is validated, versioned and indexed like any other write.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from authz.context import AccessContext
from resources.demo import patient_entries, reference_bundle
from resources.demo.fhir import transaction
from resources.models import Resource
from resources.outcomes import FhirError
from resources.transaction import process_bundle

# Exit status for bad arguments, as argparse uses for usage errors.
USAGE = 2


def _integer(name: str, value: object, minimum: int) -> int:
    """Options arrive as text from the command line and possibly as ints from call_command."""
    if isinstance(value, bool):
        value = str(value)
    try:
        number = value if isinstance(value, int) else int(str(value).strip())
    except ValueError:
        raise CommandError(f"{name} must be an integer, not {value!r}", returncode=USAGE) from None
    if number < minimum:
        raise CommandError(f"{name} must be at least {minimum}, not {number}", returncode=USAGE)
    return number


class Command(BaseCommand):
    help = (
        "Write a realistic, deterministic FHIR R4 demo data set: 5 organisations with their "
        "practitioners, roles and care teams, then N patients with encounters, vital-sign and lab "
        "observations, conditions, medication requests and care plans (about 130 resources per "
        "patient). The same seed always writes the same content; running twice without --if-empty "
        "writes a second copy of the patients."
    )

    def add_arguments(self, parser):
        # Integers are parsed in handle() so that bad values exit with status 2 from the command line
        # and raise CommandError(returncode=2) from call_command alike.
        parser.add_argument(
            "--patients",
            metavar="N",
            help="Number of patients to write (required, 0 or more; 0 writes only the reference data).",
        )
        parser.add_argument(
            "--seed",
            metavar="S",
            default="1",
            help="Seed of the generator (integer >= 0, default 1). Patient n of seed S gets MRN-S-n.",
        )
        parser.add_argument(
            "--if-empty",
            action="store_true",
            help="Do nothing (and say so) when any Patient already exists, e.g. for `make demo`.",
        )
        parser.add_argument(
            "--batch-size",
            metavar="B",
            default="1",
            help=(
                "Patients per transaction Bundle (integer >= 1, default 1). A bundle is also cut "
                "before it would exceed FHIR_MAX_BUNDLE_ENTRIES entries."
            ),
        )
        parser.add_argument(
            "--progress-every",
            metavar="K",
            default="10",
            help="Print a progress line on stderr every K patients (default 10; 0 for none).",
        )

    def handle(self, *args, **options):
        if options["patients"] is None:
            raise CommandError("--patients is required", returncode=USAGE)
        patients = _integer("--patients", options["patients"], 0)
        seed = _integer("--seed", options["seed"], 0)
        batch_size = _integer("--batch-size", options["batch_size"], 1)
        progress_every = _integer("--progress-every", options["progress_every"], 0)

        if (
            options["if_empty"]
            and Resource.objects.system("demo data: is the database empty")
            .filter(resource_type="Patient", deleted=False)
            .exists()
        ):
            self.stdout.write("Patients already exist; --if-empty given, so nothing was written.")
            return

        run = _Run(AccessContext.system("demo data"), self.stderr, progress_every)
        run.write(reference_bundle(), patients=0, what="the reference data")

        limit = settings.FHIR_MAX_BUNDLE_ENTRIES
        pending: list[dict] = []
        in_batch = 0
        for number in range(1, patients + 1):
            entries = patient_entries(seed, number)
            if pending and (in_batch >= batch_size or len(pending) + len(entries) > limit):
                run.write(
                    transaction(pending), patients=in_batch, what=f"patients {number - in_batch}-{number - 1}"
                )
                pending, in_batch = [], 0
            pending += entries
            in_batch += 1
        if pending:
            run.write(
                transaction(pending), patients=in_batch, what=f"patients {patients - in_batch + 1}-{patients}"
            )

        elapsed = time.perf_counter() - run.started
        rate = run.resources / elapsed if elapsed > 0 else 0.0
        self.stdout.write(
            f"Wrote {run.resources} resources ({patients} patients, seed {seed}) in {elapsed:.2f} s: "
            f"{rate:.1f} resources/s ({run.in_server:.2f} s in process_bundle)"
        )


class _Run:
    """Counts what has been written and reports progress."""

    def __init__(self, ctx: AccessContext, stderr, progress_every: int):
        self.ctx = ctx
        self.stderr = stderr
        self.progress_every = progress_every
        self.started = time.perf_counter()
        self.in_server = 0.0
        self.resources = 0
        self.patients = 0

    def write(self, bundle: dict, *, patients: int, what: str) -> None:
        began = time.perf_counter()
        try:
            _, results = process_bundle(self.ctx, bundle)
        except FhirError as exc:
            details = "; ".join(issue.diagnostics for issue in exc.issues)
            raise CommandError(f"Writing {what} failed ({exc.status}): {details}") from exc
        self.in_server += time.perf_counter() - began
        self.resources += sum(1 for r in results if r.status in (200, 201))
        before, self.patients = self.patients, self.patients + patients
        if self.progress_every and self.patients // self.progress_every > before // self.progress_every:
            elapsed = time.perf_counter() - self.started
            self.stderr.write(f"  {self.patients} patients, {self.resources} resources, {elapsed:.1f} s")
