"""Materialise CarePlan activities into Tasks now, instead of waiting for the scheduler.

    manage.py materialize_careplans                       # every eligible plan, up to now + horizon
    manage.py materialize_careplans --careplan ID [--start 2027-01-01T00:00:00Z --end ...] [--dry-run]

Without --careplan: plans never scheduled are adopted, changed plans planned again, and every plan's
Tasks extended to the horizon, in batches, with a progress bar. With --dry-run nothing is written:
the Tasks that would be created are counted (or, for one plan, printed as JSON). Exit status 0 when
done, 2 on bad input.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from careplans import jobs
from careplans import materialize as planner
from careplans.models import Schedule
from interactions import careplans as door
from resources.outcomes import FhirError


def _moment(text: str | None, name: str) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CommandError(
            f"--{name} '{text}' is not a dateTime (e.g. 2027-01-01T00:00:00Z)", returncode=2
        ) from None
    if moment.tzinfo is None:
        raise CommandError(f"--{name} '{text}' needs a time zone (e.g. Z)", returncode=2)
    return moment


class Command(BaseCommand):
    help = "Materialise CarePlan activities into Tasks (one plan, or every eligible plan up to the horizon)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--careplan", help="the CarePlan's id; without it, every eligible plan")
        parser.add_argument("--start", help="window start (dateTime with zone; default now)")
        parser.add_argument(
            "--end", help="window end (dateTime with zone; default now + FHIR_CAREPLAN_HORIZON_DAYS)"
        )
        parser.add_argument("--dry-run", action="store_true", help="write nothing; say what would be created")

    def handle(self, *args, careplan=None, start=None, end=None, dry_run=False, **options) -> None:
        begins, ends = _moment(start, "start"), _moment(end, "end")
        if begins and ends and ends <= begins:
            raise CommandError("--end must be after --start", returncode=2)
        if careplan:
            self._one(careplan, begins, ends, dry_run)
        elif begins or ends:
            raise CommandError(
                "--start and --end need --careplan (all plans run up to the horizon)", returncode=2
            )
        else:
            self._all(dry_run)

    def _one(self, careplan: str, start, end, dry_run: bool) -> None:
        ctx = door.scheduler(path=f"CarePlan/{careplan}/$materialize (command)")
        try:
            run = door.materialize(
                ctx, resource_type="CarePlan", fhir_id=careplan, start=start, end=end, dry_run=dry_run
            )
        except FhirError as exc:
            raise CommandError(exc.issues[0].diagnostics if exc.issues else str(exc), returncode=2) from exc
        for warning in run.warnings:
            self.stderr.write(f"warning: {warning}")
        if dry_run:
            for shown in run.shown:
                self.stdout.write(shown.body)
            self.stdout.write(f"{len(run.shown)} Tasks would be created")
        else:
            self.stdout.write(f"{len(run.created)} Tasks created")

    def _all(self, dry_run: bool) -> None:
        now = timezone.now()
        if dry_run:
            count, plans = 0, 0
            for schedule in Schedule.objects.filter(active=True):
                run = planner.Run()
                planner.window(
                    door.scheduler(),
                    schedule.careplan_pk,
                    start=now,
                    end=now + planner.horizon(),
                    now=now,
                    run=run,
                    dry_run=True,
                )
                count += len(run.previewed)
                plans += 1
            self.stdout.write(
                f"{count} Tasks would be created for {plans} scheduled plans (plans never scheduled are not counted)"
            )
            return
        started = time.monotonic()
        adopted = planner.adopt(now=now)
        changed = 0
        while True:
            done = jobs.plan_changed()
            changed += done
            if not done:
                break
        created = jobs.extend_horizon(progress=self._progress)
        elapsed = time.monotonic() - started
        if sys.stderr.isatty():
            self.stderr.write("")
        self.stdout.write(
            f"{adopted} plans adopted, {changed} planned again, {created} Tasks created in {elapsed:.1f} s"
            + (f" ({created / elapsed:.0f} Tasks/s)" if elapsed > 0 and created else "")
        )

    def _progress(self, done: int, total: int) -> None:
        width = 30
        filled = width * done // max(total, 1)
        self.stderr.write(f"\r[{'#' * filled}{' ' * (width - filled)}] {done}/{total} plans", ending="")
        self.stderr.flush()
