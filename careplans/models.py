"""What the scheduler keeps per CarePlan: how far its Tasks are materialised, from which version of
the plan, and whether a change of the plan waits to be planned again.

`dirty` is set from the outbox (in the transaction that marks the plan's events dispatched), so a
plan written by any transport is planned again; `version` and `until` let the hourly horizon
extension add only the new end of the window for plans that did not change.
"""

from __future__ import annotations

from django.db import models


class Schedule(models.Model):
    careplan_pk = models.BigIntegerField(unique=True)
    fhir_id = models.CharField(max_length=64)
    version = models.PositiveIntegerField(default=0)  # the plan version last planned (0: never)
    until = models.DateTimeField(null=True, blank=True)  # Tasks exist up to here
    dirty = models.BooleanField(default=True)
    active = models.BooleanField(default=False)  # eligible when last planned
    warnings = models.TextField(blank=True, default="")
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(fields=["careplan_pk"], name="schedule_dirty", condition=models.Q(dirty=True)),
            models.Index(fields=["until"], name="schedule_until", condition=models.Q(active=True)),
        ]

    def __str__(self) -> str:
        return f"CarePlan/{self.fhir_id} until {self.until}"
