"""Celery tasks of the CarePlan scheduler: thin wrappers over careplans/jobs.py, run by beat
(settings CELERY_BEAT_SCHEDULE) when FHIR_WORKER=celery."""

from __future__ import annotations

from celery import shared_task

from . import jobs


@shared_task(name="careplans.plan", ignore_result=True)
def plan() -> None:
    for _ in range(20):  # at most 10,000 plans per run; beat comes back in 30 s
        if not jobs.plan_changed():
            return


@shared_task(name="careplans.extend", ignore_result=True)
def extend() -> None:
    jobs.extend_horizon()


@shared_task(name="careplans.advance", ignore_result=True)
def advance() -> None:
    jobs.advance()
