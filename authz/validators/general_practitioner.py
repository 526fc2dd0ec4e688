"""`GeneralPractitioner`: a Practitioner sees the Patients it is the nominated care provider of.

A Patient counts when its generalPractitioner (https://hl7.org/fhir/R4/patient.html, search
parameter `general-practitioner`) names the calling Practitioner itself, one of its
PractitionerRoles in force, or an Organization where it holds a PractitionerRole in force
(https://hl7.org/fhir/R4/practitionerrole.html; a role with `active = false` grants nothing).
Granted: those Patients and everything in their Patient compartments
(https://hl7.org/fhir/R4/compartmentdefinition.html). Other callers: nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import Q

from resources.models import ReferenceIndex

from . import lookups
from .base import NOTHING, Validator

if TYPE_CHECKING:
    from authz.context import AccessContext


class GeneralPractitioner(Validator):
    name = "GeneralPractitioner"

    def narrowing(self, ctx: AccessContext, resource_type: str) -> Q | None:
        if ctx.identity_type != "Practitioner" or not ctx.identity_id:
            return NOTHING
        patients = (
            ReferenceIndex.objects.filter(resource_type="Patient", param="general-practitioner")
            .filter(lookups.practitioner_targets(ctx))
            .values("resource_id")
        )
        patient_ids = lookups.resources().filter(resource_type="Patient", pk__in=patients).values("fhir_id")
        return lookups.pk_in(lookups.patient_compartment(patient_ids, resource_type, focus=patients))
