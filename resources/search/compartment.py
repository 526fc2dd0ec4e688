"""Compartment search (https://hl7.org/fhir/R4/search.html#compartments,
https://hl7.org/fhir/R4/compartmentdefinition.html): `GET [base]/Patient/123/Observation?...` and
`GET [base]/Patient/123/*?...`.

Membership is decided at write time from the R4 CompartmentDefinitions and stored as
`CompartmentMembership` rows, so narrowing a search to a compartment is one indexed semi-join. The
focus resource itself (Patient/123) belongs to its own compartment.
"""

from __future__ import annotations

from django.db.models import Q

from .. import definitions
from ..models import CompartmentMembership, Resource
from ..outcomes import bad_request, not_found


def check(compartment_type: str, member_type: str | None) -> None:
    """FhirError unless `compartment_type` is an R4 compartment and `member_type` (None for `*`)
    can be in it."""
    members = definitions.compartments().get(compartment_type)
    if members is None:
        raise not_found(
            f"'{compartment_type}' is not a compartment (R4 compartments: "
            f"{', '.join(sorted(definitions.compartments()))})"
        )
    if member_type is not None and member_type != compartment_type and member_type not in members:
        if member_type not in definitions.resource_types():
            raise not_found(f"Unknown resource type '{member_type}'")
        raise bad_request(
            f"{member_type} resources are never in a {compartment_type} compartment "
            "(https://hl7.org/fhir/R4/compartmentdefinition.html)",
            code="not-supported",
        )


def member_types(compartment_type: str) -> list[str]:
    """Every resource type that can be in the compartment, the compartment's own type included."""
    members = set(definitions.compartments()[compartment_type]) | {compartment_type}
    return sorted(members)


def narrowing(compartment_type: str, compartment_id: str, member_type: str | None) -> Q:
    """Resources in the compartment (of `member_type`, or any type for None)."""
    rows = CompartmentMembership.objects.filter(
        compartment_type=compartment_type, compartment_id=compartment_id
    )
    if member_type is not None:
        rows = rows.filter(resource_type=member_type)
    members = rows.values("resource_id")
    if member_type not in (None, compartment_type):
        return Q(pk__in=members)
    # The focus row only names which resource the compartment is about; the outer query is the
    # caller's restricted one and decides whether that row is returned.
    focus = (
        Resource.objects.system("compartment focus row")
        .filter(resource_type=compartment_type, fhir_id=compartment_id)
        .values("pk")
    )
    # A union keeps this one semi-join; `IN (...) OR (type AND id)` would test every row instead.
    return Q(pk__in=members.union(focus))
