"""SQL building blocks shared by the validators: who the caller's patients, roles and organisations
are, and the rows a Patient compartment holds.

Two kinds of value come out of here:

- small sets of FHIR ids the narrowing depends on (the caller's patients, its PractitionerRoles, its
  organisations): worked out with one query each (one per hierarchy level for descendants), memoised
  per request with `ctx.memo`, so a request pays for them once whatever the number of rows searched;
- "pieces": querysets of one column of `Resource` primary keys, never evaluated here, that
  `pk_in` unions into one semi-join (the pattern of resources/search/compartment.py).

Every `Resource` subquery starts from `resources()`: the fail-closed manager
(authz/querysets.py) is opened in exactly one place for access-rule lookups. Index tables and
CompartmentMembership are not fail-closed and are used directly.

Search parameter codes are those of the R4 registry (https://hl7.org/fhir/R4/searchparameter-registry.html);
compartments follow https://hl7.org/fhir/R4/compartmentdefinition.html.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from django.db.models import Exists, OuterRef, Q, QuerySet

from resources.models import CompartmentMembership, ReferenceIndex, Resource, TokenIndex
from resources.search.compartment import member_types

from .base import NOTHING

if TYPE_CHECKING:
    from authz.context import AccessContext

ANY_TYPE = "*"
# Organization.partOf chains deeper than this are not followed (a cycle or a pathological tree
# must not turn one request into an unbounded number of queries).
MAX_ORGANIZATION_LEVELS = 10

# A set of FHIR ids, as a Python list (already looked up) or a one-column subquery (not yet run).
Ids = list[str] | QuerySet


def index(model: type) -> QuerySet:
    """An index or membership table, unrestricted: only for the lookups of access rules themselves."""
    return model.objects.system("access rule lookup")


def resources() -> QuerySet:
    """Current Resource rows, unrestricted: only for the lookups of access rules themselves."""
    return Resource.objects.system("access rule lookup").filter(deleted=False)


def wants(resource_type: str, *types: str) -> bool:
    """Whether a narrowing asked for `resource_type` ("*": any of the rule's types) covers `types`."""
    return resource_type == ANY_TYPE or resource_type in types


def pk_in(pieces: list[QuerySet]) -> Q:
    """Rows whose pk is in any of the one-column subqueries, as one semi-join over their UNION.

    A union keeps it one indexed `pk IN (...)` however many pieces there are, where an OR of
    `IN`s makes the database test each row against each branch; the Q stays an ordinary lookup, so
    it can be ANDed, ORed or negated with other conditions.
    """
    if not pieces:
        return NOTHING
    first, *rest = pieces
    return Q(pk__in=first.union(*rest) if rest else first)


# --- compartments ---------------------------------------------------------------------------------


def compartment_pieces(
    compartment_type: str, ids: Ids, resource_type: str, *, focus: QuerySet | None = None
) -> list[QuerySet]:
    """The rows of `resource_type` in the `compartment_type` compartments of `ids`: the membership
    rows written at index time, plus the focus resources themselves (a Patient is in its own
    compartment). `focus`: the focus rows' pks when the caller already has them as a subquery."""
    pieces: list[QuerySet] = []
    if wants(resource_type, *member_types(compartment_type)):
        members = index(CompartmentMembership).filter(
            compartment_type=compartment_type, compartment_id__in=ids
        )
        if resource_type != ANY_TYPE:
            # The lookup index leads with (compartment_type, compartment_id, resource_type).
            members = members.filter(resource_type=resource_type)
        pieces.append(members.values("resource_id"))
    if wants(resource_type, compartment_type):
        if focus is None:
            focus = resources().filter(resource_type=compartment_type, fhir_id__in=ids).values("pk")
        pieces.append(focus)
    return pieces


def in_compartment(compartment_type: str, ids: Ids, resource_type: str) -> Q:
    """One row is in a compartment of `ids` (or is one of their focus resources), as a correlated
    EXISTS probing that row's membership: cheap for one row, where the set form builds everything."""
    members = index(CompartmentMembership).filter(
        resource_id=OuterRef("pk"), compartment_type=compartment_type, compartment_id__in=ids
    )
    # Kept as an OR with the focus rows even for other types: an OR'ed EXISTS stays a per-row probe,
    # where a lone EXISTS is flattened into a join the planner drives from the (badly estimated)
    # membership side, building the whole set before the search's own criteria.
    return Q(Exists(members)) | Q(resource_type=compartment_type, fhir_id__in=ids)


def patient_compartment(ids: Ids, resource_type: str, *, focus: QuerySet | None = None) -> list[QuerySet]:
    return compartment_pieces("Patient", ids, resource_type, focus=focus)


def _references(resource_type: str, param: str, target_type: str) -> QuerySet:
    return index(ReferenceIndex).filter(resource_type=resource_type, param=param, target_type=target_type)


def _with_links(base: Ids) -> list[str]:
    """`base` and the Patients linked to them by Patient.link.other, in either direction, one level
    (https://hl7.org/fhir/R4/patient.html#links): one query."""
    outgoing = _references("Patient", "link", "Patient").filter(
        resource_id__in=resources().filter(resource_type="Patient", fhir_id__in=base).values("pk")
    )
    incoming = resources().filter(
        resource_type="Patient",
        pk__in=_references("Patient", "link", "Patient").filter(target_id__in=base).values("resource_id"),
    )
    parts = [incoming.values_list("fhir_id", flat=True)]
    if isinstance(base, QuerySet):
        parts.append(base)  # the base ids come back in the same query
    found = set(outgoing.values_list("target_id", flat=True).union(*parts))
    if not isinstance(base, QuerySet):
        found.update(base)
    return sorted(found)


def _linked(patient_id: str) -> QuerySet:
    """One Patient id and the ids of the Patients linked to it (either direction, one level), as a
    subquery: the narrowing stays one statement with no lookup of its own (a Patient's reads are the
    hottest narrowed path)."""
    links = _references("Patient", "link", "Patient")
    own = resources().filter(resource_type="Patient", fhir_id=patient_id)
    outgoing = links.filter(resource_id__in=own.values("pk")).values("target_id")
    incoming = resources().filter(
        resource_type="Patient", pk__in=links.filter(target_id=patient_id).values("resource_id")
    )
    return own.values("fhir_id").union(outgoing, incoming.values("fhir_id"))


def caller_patients(ctx: AccessContext) -> Ids:
    """The Patient ids whose compartments a Patient or RelatedPerson caller reaches: a Patient
    itself, a RelatedPerson the Patient its `patient` names; both plus their linked Patients."""

    def compute() -> list[str]:
        if ctx.identity_type == "Patient" and ctx.identity_id:
            return _linked(ctx.identity_id)
        if ctx.identity_type == "RelatedPerson" and ctx.identity_id:
            related = resources().filter(resource_type="RelatedPerson", fhir_id=ctx.identity_id).values("pk")
            base = (
                _references("RelatedPerson", "patient", "Patient")
                .filter(resource_id__in=related)
                .values_list("target_id", flat=True)
            )
            return _with_links(base)
        return []

    return ctx.memo(("authz.validators", "caller-patients"), compute)


# --- practitioners and their organisations ------------------------------------------------------


def active_roles(practitioner_id: str) -> QuerySet:
    """pks of the practitioner's PractitionerRoles that are not `active = false`.

    PractitionerRole.active (https://hl7.org/fhir/R4/practitionerrole.html) is optional; a role
    without it is taken as in force, one marked false as ended. Booleans are indexed as the token
    code "true"/"false" with no system (resources/indexing/token.py).
    """
    ended = index(TokenIndex).filter(resource_type="PractitionerRole", param="active", code="false")
    return (
        _references("PractitionerRole", "practitioner", "Practitioner")
        .filter(target_id=practitioner_id)
        .exclude(resource_id__in=ended.values("resource_id"))
        .values("resource_id")
    )


def role_ids(ctx: AccessContext) -> list[str]:
    """FHIR ids of the calling Practitioner's active PractitionerRoles (one query per request)."""

    def compute() -> list[str]:
        if ctx.identity_type != "Practitioner" or not ctx.identity_id:
            return []
        rows = resources().filter(resource_type="PractitionerRole", pk__in=active_roles(ctx.identity_id))
        return sorted(rows.values_list("fhir_id", flat=True))

    return ctx.memo(("authz.validators", "role-ids"), compute)


def organizations(ctx: AccessContext, *, inherit: bool = False) -> list[str]:
    """FHIR ids of the existing Organizations where the calling Practitioner holds an active
    PractitionerRole; with `inherit`, also every Organization whose `partOf` chain leads to one of
    them (up to MAX_ORGANIZATION_LEVELS levels, one query per level)."""

    def direct() -> list[str]:
        if ctx.identity_type != "Practitioner" or not ctx.identity_id:
            return []
        named = (
            _references("PractitionerRole", "organization", "Organization")
            .filter(resource_id__in=active_roles(ctx.identity_id))
            .values("target_id")
        )
        # Only Organizations that still exist: a role pointing at a deleted one grants nothing.
        rows = resources().filter(resource_type="Organization", fhir_id__in=named)
        return sorted(rows.values_list("fhir_id", flat=True))

    orgs = ctx.memo(("authz.validators", "organizations"), direct)
    if not inherit:
        return orgs
    return ctx.memo(("authz.validators", "organizations+descendants"), lambda: descendants(orgs))


def descendants(roots: Iterable[str]) -> list[str]:
    """`roots` and the Organizations below them through Organization.partOf
    (https://hl7.org/fhir/R4/organization.html), breadth first, one query per level."""
    seen = set(roots)
    frontier = sorted(seen)
    for _ in range(MAX_ORGANIZATION_LEVELS):
        if not frontier:
            break
        children = resources().filter(
            resource_type="Organization",
            pk__in=_references("Organization", "partof", "Organization")
            .filter(target_id__in=frontier)
            .values("resource_id"),
        )
        fresh = set(children.values_list("fhir_id", flat=True)) - seen  # a cycle adds nothing new
        seen |= fresh
        frontier = sorted(fresh)
    return sorted(seen)


def managing_organizations(ctx: AccessContext) -> list[str]:
    """FHIR ids of the existing Organization a calling Patient's `managingOrganization` names."""

    def compute() -> list[str]:
        if ctx.identity_type != "Patient" or not ctx.identity_id:
            return []
        me = resources().filter(resource_type="Patient", fhir_id=ctx.identity_id).values("pk")
        named = _references("Patient", "organization", "Organization").filter(resource_id__in=me)
        rows = resources().filter(resource_type="Organization", fhir_id__in=named.values("target_id"))
        return sorted(rows.values_list("fhir_id", flat=True))

    return ctx.memo(("authz.validators", "managing-organizations"), compute)


def managed_patients(orgs: list[str]) -> QuerySet:
    """pks of the Patients whose managingOrganization is one of `orgs` (a subquery)."""
    return (
        _references("Patient", "organization", "Organization")
        .filter(target_id__in=orgs)
        .values("resource_id")
    )


def staff_pieces(orgs: list[str], resource_type: str) -> list[QuerySet]:
    """The Organization rows of `orgs`, every PractitionerRole whose `organization` is one of them,
    and the Practitioners those roles name (active or not: they are the organisation's directory)."""
    pieces: list[QuerySet] = []
    roles = _references("PractitionerRole", "organization", "Organization").filter(target_id__in=orgs)
    if wants(resource_type, "Organization"):
        pieces.append(resources().filter(resource_type="Organization", fhir_id__in=orgs).values("pk"))
    if wants(resource_type, "PractitionerRole"):
        pieces.append(roles.values("resource_id"))
    if wants(resource_type, "Practitioner"):
        holders = _references("PractitionerRole", "practitioner", "Practitioner").filter(
            resource_id__in=roles.values("resource_id")
        )
        pieces.append(
            resources()
            .filter(resource_type="Practitioner", fhir_id__in=holders.values("target_id"))
            .values("pk")
        )
    return pieces


def practitioner_targets(ctx: AccessContext) -> Q:
    """A condition on ReferenceIndex target columns: a reference to the calling Practitioner itself,
    to one of its active PractitionerRoles, or to an Organization where it holds an active role."""
    targets = Q(target_type="Practitioner", target_id=ctx.identity_id)
    roles = role_ids(ctx)
    if roles:
        targets |= Q(target_type="PractitionerRole", target_id__in=roles)
    orgs = organizations(ctx)
    if orgs:
        targets |= Q(target_type="Organization", target_id__in=orgs)
    return targets


# --- grant bases (write checks: authz/grants.py) ---------------------------------------------------


def id_set(ids: Ids) -> set[str]:
    """`ids` evaluated now: a list as it is, a one-column subquery (values or values_list) run."""
    if isinstance(ids, list):
        return set(ids)
    return {next(iter(row.values())) if isinstance(row, dict) else row for row in ids}


def managed_patient_ids(orgs: list[str]) -> QuerySet:
    """FHIR ids of the existing Patients whose managingOrganization is one of `orgs` (a subquery)."""
    return resources().filter(resource_type="Patient", pk__in=managed_patients(orgs)).values("fhir_id")


def items(kind: str, ids: Iterable[str]) -> frozenset[tuple[str, str]]:
    return frozenset((kind, one) for one in ids)


def staff_ids(orgs: list[str]) -> QuerySet:
    """FHIR ids of the existing Practitioners holding a PractitionerRole (active or not) in `orgs`."""
    roles = _references("PractitionerRole", "organization", "Organization").filter(target_id__in=orgs)
    holders = _references("PractitionerRole", "practitioner", "Practitioner").filter(
        resource_id__in=roles.values("resource_id")
    )
    return (
        resources()
        .filter(resource_type="Practitioner", fhir_id__in=holders.values("target_id"))
        .values("fhir_id")
    )
