"""`CareTeam`: a Practitioner sees the care teams it takes part in, and their patients.

A CareTeam (https://hl7.org/fhir/R4/careteam.html) counts when one of its participant members
(search parameter `participant`, CareTeam.participant.member) is the calling Practitioner itself,
one of its PractitionerRoles in force, or an Organization where it holds a PractitionerRole in force
(https://hl7.org/fhir/R4/practitionerrole.html; `active = false` roles grant nothing, by either
path). Granted: those CareTeams, the Patients they are about (CareTeam.subject referencing a
Patient), and everything in those Patients' compartments
(https://hl7.org/fhir/R4/compartmentdefinition.html).

CareTeam.status (https://hl7.org/fhir/R4/valueset-care-team-status.html) is proposed | active |
suspended | inactive | entered-in-error. An `inactive` team has ended and an `entered-in-error`
one never existed, so neither grants anything; `proposed` and `suspended` teams still exist for
their patient's care and do, as does a team without a status. Other callers: nothing.

Writes: the caller may place data in its teams' patients' compartments; the grants rest on its teams
and their patients, which writes of CareTeam, PractitionerRole and Organization can change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import Q, QuerySet

from resources.models import ReferenceIndex, TokenIndex

from . import lookups
from .base import NO_COMPARTMENT, NOTHING, Validator, patient_ids_condition

if TYPE_CHECKING:
    from authz.context import AccessContext

# CareTeam.status codes that take a team out of anyone's care.
ENDED_STATUSES = ("inactive", "entered-in-error")


class CareTeam(Validator):
    name = "CareTeam"

    def narrowing(self, ctx: AccessContext, resource_type: str) -> Q | None:
        if ctx.identity_type != "Practitioner" or not ctx.identity_id:
            return NOTHING
        teams, patient_ids = _teams(ctx)
        pieces = [teams] if lookups.wants(resource_type, "CareTeam") else []
        pieces += lookups.patient_compartment(patient_ids, resource_type)
        return lookups.pk_in(pieces)

    def grant_basis(self, ctx: AccessContext) -> frozenset[tuple[str, str]]:
        if ctx.identity_type != "Practitioner" or not ctx.identity_id:
            return frozenset()
        teams, patient_ids = _teams(ctx)
        team_ids = lookups.resources().filter(pk__in=teams).values_list("fhir_id", flat=True)
        return lookups.items("care-team", team_ids) | lookups.items("patient", lookups.id_set(patient_ids))

    def basis_types(self, ctx: AccessContext) -> frozenset[str]:
        if ctx.identity_type != "Practitioner":
            return frozenset()
        # Teams name their members and patients; roles and organisations make the caller a member.
        return frozenset({"CareTeam", "PractitionerRole", "Organization"})

    def patient_writes(self, ctx: AccessContext) -> Q | None:
        if ctx.identity_type != "Practitioner" or not ctx.identity_id:
            return NO_COMPARTMENT
        return patient_ids_condition(_teams(ctx)[1])

    def patient_writes_key(self, ctx: AccessContext) -> tuple | None:
        return practitioner_key(ctx)


def practitioner_key(ctx: AccessContext) -> tuple:
    """What `lookups.practitioner_targets(ctx)` bakes into SQL besides the identity."""
    if ctx.identity_type != "Practitioner" or not ctx.identity_id:
        return ()
    return (tuple(lookups.role_ids(ctx)), tuple(lookups.organizations(ctx)))


def _teams(ctx: AccessContext) -> tuple[QuerySet, QuerySet]:
    """(pks of the CareTeams in force the caller takes part in, ids of the Patients they are about),
    both as subqueries."""
    ended = lookups.index(TokenIndex).filter(
        resource_type="CareTeam", param="status", code__in=ENDED_STATUSES
    )
    teams = (
        lookups.index(ReferenceIndex)
        .filter(resource_type="CareTeam", param="participant")
        .filter(lookups.practitioner_targets(ctx))
        .exclude(resource_id__in=ended.values("resource_id"))
        .values("resource_id")
    )
    patient_ids = (
        lookups.index(ReferenceIndex)
        .filter(resource_type="CareTeam", param="subject", target_type="Patient", resource_id__in=teams)
        .values("target_id")
    )
    return teams, patient_ids
