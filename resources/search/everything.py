"""`Patient/[id]/$everything` and `Patient/$everything`
(https://hl7.org/fhir/R4/patient-operation-everything.html, OperationDefinition
http://hl7.org/fhir/OperationDefinition/Patient-everything).

What the record holds here:

1. the Patient resource(s) themselves;
2. every resource in their Patient compartment (the `CompartmentMembership` rows written from the
   R4 Patient CompartmentDefinition: Observations, Encounters, Conditions, MedicationRequests...);
3. the resources that (1) and (2) refer to, when they are of a *supporting* type that carries no
   patient's data of its own: SUPPORTING_TYPES below (Organization, Location, Practitioner,
   PractitionerRole, Medication, Substance, Device, HealthcareService, Endpoint). Referenced
   resources of other types are left out: a referenced Patient, Group or RelatedPerson belongs to
   someone else's record, and a referenced Bundle or Task may carry another patient's data.

Parameters: `_since` (only resources last updated at or after the instant), `_type` (only these
types, comma-separated), `_count` and paging as for search. `start`/`end` (care dates) are not
supported and are reported like unknown search parameters.

The instance-level operation covers one patient; the type-level one every patient the caller may
see (until access rules land: every patient). Resources of (1) and (2) are `search.mode=match`,
supporting ones `include`. Everything is one SQL statement per page, keyset-paged like a search.
"""

from __future__ import annotations

from datetime import datetime

from django.db.models import Exists, OuterRef, Q, QuerySet

from ..models import CompartmentMembership, ReferenceIndex, Resource

COMPARTMENT = "Patient"
SUPPORTING_TYPES = (
    "Device",
    "Endpoint",
    "HealthcareService",
    "Location",
    "Medication",
    "Organization",
    "Practitioner",
    "PractitionerRole",
    "Substance",
)
PARAMS = ("_since", "_type", "_count")


def record(
    patient_id: str | None, visible: QuerySet | None = None, hidden: Q | None = None, kept: Q | None = None
) -> Q:
    """The resources of the record of one patient, or of every patient for None. `visible`: the
    caller's rows (pks) when its rules narrow: a supporting resource (a Practitioner, a Medication)
    belongs to the answer only through a record entry the caller may see, or its presence would
    tell what an unreadable entry refers to. `hidden`: the reference rows the caller's rules hide
    (search/access.py), which bring in no supporting resource either; `kept`: the condition a
    resource must meet to stay in the record (not there only through a hidden reference), and so to
    bring in what it refers to."""
    if patient_id is None:
        return _every_record(visible, hidden, kept)
    members = CompartmentMembership.objects.filter(compartment_type=COMPARTMENT, compartment_id=patient_id)
    # Membership only: the outer query is the caller's restricted one and decides what is returned.
    patients = Resource.objects.system("patient record membership").filter(
        resource_type=COMPARTMENT, fhir_id=patient_id, deleted=False
    )
    own = members.values("resource_id").union(patients.values("pk"))
    sources = own if visible is None else visible.filter(pk__in=own)
    if kept:
        sources = Resource.objects.system("patient record membership").filter(pk__in=sources).filter(kept)
        sources = sources.values("pk")
    # `resource_id IN (union)` is one semi-join; an OR of two INs would scan the whole index table.
    referenced = ReferenceIndex.objects.filter(
        resource_id__in=sources,
        target_type__in=SUPPORTING_TYPES,
        target_type=OuterRef("resource_type"),
        target_id=OuterRef("fhir_id"),
    )
    if hidden is not None:
        referenced = referenced.exclude(hidden)
    supporting = (
        Resource.objects.system("patient record membership")
        .filter(Exists(referenced), resource_type__in=SUPPORTING_TYPES)
        .values("pk")
    )
    # One patient's record is small: collect it as a set of ids, then page through it.
    return Q(pk__in=own.union(supporting))


def _every_record(visible: QuerySet | None, hidden: Q | None, kept: Q | None) -> Q:
    """Every patient's record is most of the database, so rather than collect it the condition is
    tested row by row while the page is read in primary-key order, and reading stops at `_count`
    (every subquery is correlated, so none is built whole)."""
    in_a_compartment = CompartmentMembership.objects.filter(
        resource_id=OuterRef("pk"), compartment_type=COMPARTMENT
    )
    source_in_a_compartment = CompartmentMembership.objects.filter(
        resource_id=OuterRef("resource_id"), compartment_type=COMPARTMENT
    )
    referenced = ReferenceIndex.objects.filter(
        Q(Exists(source_in_a_compartment)) | Q(resource_type=COMPARTMENT),
        target_type=OuterRef("resource_type"),
        target_id=OuterRef("fhir_id"),
    )
    if visible is not None:
        referenced = referenced.filter(resource_id__in=visible)
    if hidden is not None:
        referenced = referenced.exclude(hidden)
    if kept:
        referenced = referenced.filter(
            resource_id__in=Resource.objects.system("patient record membership").filter(kept).values("pk")
        )
    return (
        Q(resource_type=COMPARTMENT)
        | Q(Exists(in_a_compartment))
        | Q(Exists(referenced), resource_type__in=SUPPORTING_TYPES)
    )


def narrowing(*, since: datetime | None, types: list[str] | None) -> Q:
    condition = Q()
    if since is not None:
        condition &= Q(last_updated__gte=since)
    if types:
        condition &= Q(resource_type__in=types)
    return condition


def entry_mode(resource_type: str) -> str:
    return "include" if resource_type in SUPPORTING_TYPES else "match"
