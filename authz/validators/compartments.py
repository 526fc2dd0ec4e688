"""Compartment validators: what lies in the caller's compartment
(https://hl7.org/fhir/R4/compartmentdefinition.html).

- `PatientCompartment` grants the Patient compartments of the caller's patients: a Patient caller
  itself plus the Patients linked to it through Patient.link.other in either direction
  (https://hl7.org/fhir/R4/patient.html#links: the same person recorded twice, one level); a
  RelatedPerson caller the Patient its `patient` names (https://hl7.org/fhir/R4/relatedperson.html)
  plus that Patient's links. Any other caller: nothing.
- `PractitionerCompartment`, `RelatedPersonCompartment`, `DeviceCompartment` grant the caller's own
  compartment of that type, when the caller is of that type; nothing otherwise.

Writes: `PatientCompartment` lets the caller place data in its patients' compartments, and its grants
rest on who those patients are (changed by writes of Patient and RelatedPerson). The own-compartment
validators let the caller write into no Patient compartment, and rest on nothing but the caller's
identity (a resource enters the caller's compartment by its own references, so only the written
resource itself can join it).

A compartment holds the resources its definition names (membership rows written at index time)
and the focus resource itself, as in a compartment search (resources/search/compartment.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from django.db.models import Q

from . import lookups
from .base import NOTHING, Validator, patient_ids_condition

if TYPE_CHECKING:
    from authz.context import AccessContext


class PatientCompartment(Validator):
    name = "PatientCompartment"

    def narrowing(self, ctx: AccessContext, resource_type: str) -> Q | None:
        patients = lookups.caller_patients(ctx)
        if isinstance(patients, list) and not patients:
            return NOTHING
        return lookups.pk_in(lookups.patient_compartment(patients, resource_type))

    def depends_only_on_identity(self, ctx: AccessContext) -> bool:
        # A Patient's patients (itself and its links) are a subquery; a RelatedPerson's are looked up.
        return ctx.identity_type == "Patient"

    def row_condition(self, ctx: AccessContext, resource_type: str) -> Q | None:
        patients = lookups.caller_patients(ctx)
        if isinstance(patients, list) and not patients:
            return NOTHING
        return lookups.in_compartment("Patient", patients, resource_type)

    def grant_basis(self, ctx: AccessContext) -> frozenset[tuple[str, str]]:
        return lookups.items("patient", lookups.id_set(lookups.caller_patients(ctx)))

    def basis_types(self, ctx: AccessContext) -> frozenset[str]:
        # Patient.link and RelatedPerson.patient decide who the caller's patients are.
        return frozenset({"Patient", "RelatedPerson"})

    def patient_writes(self, ctx: AccessContext) -> Q | None:
        return patient_ids_condition(lookups.caller_patients(ctx))

    def patient_writes_key(self, ctx: AccessContext) -> tuple | None:
        if ctx.identity_type == "Patient":
            return ()  # a subquery on the identity (not built here: building it costs more than a query)
        patients = lookups.caller_patients(ctx)
        return tuple(patients) if isinstance(patients, list) else ()


class _OwnCompartment(Validator):
    """The compartment whose focus is the caller itself."""

    compartment: ClassVar[str]

    def narrowing(self, ctx: AccessContext, resource_type: str) -> Q | None:
        if ctx.identity_type != self.compartment or not ctx.identity_id:
            return NOTHING
        return lookups.pk_in(lookups.compartment_pieces(self.compartment, [ctx.identity_id], resource_type))

    def depends_only_on_identity(self, ctx: AccessContext) -> bool:
        return True

    def row_condition(self, ctx: AccessContext, resource_type: str) -> Q | None:
        if ctx.identity_type != self.compartment or not ctx.identity_id:
            return NOTHING
        return lookups.in_compartment(self.compartment, [ctx.identity_id], resource_type)


class PractitionerCompartment(_OwnCompartment):
    name = "PractitionerCompartment"
    compartment = "Practitioner"


class RelatedPersonCompartment(_OwnCompartment):
    name = "RelatedPersonCompartment"
    compartment = "RelatedPerson"


class DeviceCompartment(_OwnCompartment):
    name = "DeviceCompartment"
    compartment = "Device"
