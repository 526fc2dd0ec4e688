"""`LegitimateInterest`: what a care provider's organisations give its staff a reason to see.

For a Practitioner caller, its organisations are those of its PractitionerRoles
(https://hl7.org/fhir/R4/practitionerrole.html) that are in force (`active` true or absent; a role
marked `active = false` has ended and grants nothing); with `inherit: true` also every
Organization below them through Organization.partOf (https://hl7.org/fhir/R4/organization.html),
so staff of a hospital see its departments. Granted:

- those Organization rows, every PractitionerRole of them, the Practitioners holding those roles;
- the Patients whose managingOrganization (https://hl7.org/fhir/R4/patient.html, search
  parameter `organization`) is one of them, and everything in those Patients' compartments
  (https://hl7.org/fhir/R4/compartmentdefinition.html).

For a Patient caller: its own Patient compartment (as PatientCompartment, links included), its own
managing organisation's Organization row, that organisation's PractitionerRoles and the
Practitioners holding them (who may be looking after it). `inherit` does not apply to a Patient.
Any other caller: nothing.

Writes: a Practitioner may place data in its organisations' patients' compartments, a Patient in its
own. The grants rest on the organisations and patients above, which writes of PractitionerRole,
Organization and Patient can change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db.models import Q

from . import lookups
from .base import NO_COMPARTMENT, NOTHING, RuleError, Validator, patient_ids_condition

if TYPE_CHECKING:
    from authz.context import AccessContext


class LegitimateInterest(Validator):
    name = "LegitimateInterest"

    def __init__(self, **params: Any) -> None:
        unknown = set(params) - {"inherit"}
        if unknown:
            raise RuleError(
                f"{self.name}: unknown parameter(s) {', '.join(sorted(map(str, unknown)))} (known: inherit)"
            )
        inherit = params.get("inherit", False)
        if type(inherit) is not bool:  # YAML `yes`/`no` are booleans already; "yes" in quotes is not
            raise RuleError(f"{self.name}: 'inherit' must be true or false (got {inherit!r})")
        self.inherit: bool = inherit

    def narrowing(self, ctx: AccessContext, resource_type: str) -> Q | None:
        if ctx.identity_type == "Practitioner":
            orgs = lookups.organizations(ctx, inherit=self.inherit)
            if not orgs:
                return NOTHING
            patients = lookups.managed_patients(orgs)
            patient_ids = (
                lookups.resources().filter(resource_type="Patient", pk__in=patients).values("fhir_id")
            )
            # An organisation's patients are many (hundreds of compartments, tens of thousands of
            # rows): each candidate row probes its own membership (a correlated EXISTS on the
            # membership index) rather than the search building the whole set first.
            staff = lookups.pk_in(lookups.staff_pieces(orgs, resource_type))
            return staff | lookups.in_compartment("Patient", patient_ids, resource_type)
        if ctx.identity_type == "Patient":
            patients = lookups.caller_patients(ctx)
            pieces = lookups.patient_compartment(patients, resource_type)
            orgs = lookups.managing_organizations(ctx)
            if orgs:
                pieces += lookups.staff_pieces(orgs, resource_type)
            return lookups.pk_in(pieces)
        return NOTHING

    def grant_basis(self, ctx: AccessContext) -> frozenset[tuple[str, str]]:
        if ctx.identity_type == "Practitioner":
            orgs = lookups.organizations(ctx, inherit=self.inherit)
            if not orgs:
                return frozenset()
            patients = lookups.id_set(lookups.managed_patient_ids(orgs))
            return _staff(orgs) | lookups.items("patient", patients)
        if ctx.identity_type == "Patient":
            patients = lookups.id_set(lookups.caller_patients(ctx))
            orgs = lookups.managing_organizations(ctx)
            return lookups.items("patient", patients) | (_staff(orgs) if orgs else frozenset())
        return frozenset()

    def basis_types(self, ctx: AccessContext) -> frozenset[str]:
        if ctx.identity_type not in ("Practitioner", "Patient"):
            return frozenset()
        # Roles name the organisations, partOf builds the hierarchy, managingOrganization (and, for a
        # Patient caller, Patient.link) names the patients.
        return frozenset({"PractitionerRole", "Organization", "Patient"})

    def patient_writes(self, ctx: AccessContext) -> Q | None:
        if ctx.identity_type == "Practitioner":
            orgs = lookups.organizations(ctx, inherit=self.inherit)
            return patient_ids_condition(lookups.managed_patient_ids(orgs)) if orgs else NO_COMPARTMENT
        if ctx.identity_type == "Patient":
            return patient_ids_condition(lookups.caller_patients(ctx))
        return NO_COMPARTMENT

    def patient_writes_key(self, ctx: AccessContext) -> tuple | None:
        if ctx.identity_type == "Practitioner":
            return (self.inherit, tuple(lookups.organizations(ctx, inherit=self.inherit)))
        return ()  # a Patient's patients are a subquery on its identity; anyone else: none

    def params(self) -> dict[str, Any]:
        return {"inherit": True} if self.inherit else {}


def _staff(orgs: list[str]) -> frozenset[tuple[str, str]]:
    # The organisations and the Practitioners holding roles in them (the directory the rule shows).
    practitioners = lookups.id_set(lookups.staff_ids(orgs))
    return lookups.items("organization", orgs) | lookups.items("practitioner", practitioners)
