"""`GeneralPractitioner`: a Practitioner sees the Patients it is the nominated care provider of.

A Patient counts when its generalPractitioner (https://hl7.org/fhir/R4/patient.html, search
parameter `general-practitioner`) names the calling Practitioner itself, one of its
PractitionerRoles in force, or an Organization where it holds a PractitionerRole in force
(https://hl7.org/fhir/R4/practitionerrole.html; a role with `active = false` grants nothing).
Granted: those Patients and everything in their Patient compartments
(https://hl7.org/fhir/R4/compartmentdefinition.html). Other callers: nothing.

Writes: the caller may place data in those Patients' compartments; the grants rest on who they are,
which writes of Patient (generalPractitioner), PractitionerRole and Organization can change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import Q, QuerySet

from resources.models import ReferenceIndex

from . import lookups
from .base import NO_COMPARTMENT, NOTHING, Validator, patient_ids_condition
from .care_team import practitioner_key

if TYPE_CHECKING:
    from authz.context import AccessContext


class GeneralPractitioner(Validator):
    name = "GeneralPractitioner"

    def narrowing(self, ctx: AccessContext, resource_type: str) -> Q | None:
        if ctx.identity_type != "Practitioner" or not ctx.identity_id:
            return NOTHING
        patients, patient_ids = _patients(ctx)
        return lookups.pk_in(lookups.patient_compartment(patient_ids, resource_type, focus=patients))

    def grant_basis(self, ctx: AccessContext) -> frozenset[tuple[str, str]]:
        if ctx.identity_type != "Practitioner" or not ctx.identity_id:
            return frozenset()
        return lookups.items("patient", lookups.id_set(_patients(ctx)[1]))

    def basis_types(self, ctx: AccessContext) -> frozenset[str]:
        if ctx.identity_type != "Practitioner":
            return frozenset()
        return frozenset({"Patient", "PractitionerRole", "Organization"})

    def patient_writes(self, ctx: AccessContext) -> Q | None:
        if ctx.identity_type != "Practitioner" or not ctx.identity_id:
            return NO_COMPARTMENT
        return patient_ids_condition(_patients(ctx)[1])

    def patient_writes_key(self, ctx: AccessContext) -> tuple | None:
        return practitioner_key(ctx)


def _patients(ctx: AccessContext) -> tuple[QuerySet, QuerySet]:
    """(pks, ids) of the Patients naming the caller as generalPractitioner, as subqueries."""
    patients = (
        lookups.index(ReferenceIndex)
        .filter(resource_type="Patient", param="general-practitioner")
        .filter(lookups.practitioner_targets(ctx))
        .values("resource_id")
    )
    return patients, lookups.resources().filter(resource_type="Patient", pk__in=patients).values("fhir_id")
