"""The caller's view of the resources for every query a search builds: the access rules' narrowing
(Resource.objects.restrict) and the parameters their property filters and blocklists refuse.

Chains and `_has` (https://hl7.org/fhir/R4/search.html#chaining, #has) filter by resources that are
never returned, so no Python check can run on them: over a type where a rule that may authorise it
decides on the body in Python (a FhirPath validator), the SQL narrowing alone would let rows the
rule refuses on read answer the criterion. Such subqueries are refused (`reachable`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from django.db.models import Q, QuerySet

from authz import rules
from authz.context import SYSTEM, AccessContext

from .. import definitions
from ..models import Resource
from ..outcomes import FhirError, error


def rows(ctx: AccessContext, operation: str, types: list[str] | None = None) -> QuerySet:
    return Resource.objects.restrict(ctx, operation, types)


def reachable(ctx: AccessContext, operation: str = "search") -> Callable[[str], QuerySet]:
    """`rows` for the subqueries of chains and `_has`: the caller's view of a type, refused (403)
    where a rule that may authorise that type checks bodies in Python."""

    def rows_of(resource_type: str) -> QuerySet:
        if rules.checks_bodies(ctx, operation, [resource_type]):
            raise error(
                403,
                "forbidden",
                f"Chained parameters and _has over {resource_type} are not allowed for your role: "
                f"access to {resource_type} is decided on each resource's content, which a search "
                "criterion cannot evaluate",
            )
        return rows(ctx, operation, [resource_type])

    return rows_of


def guard(ctx: AccessContext, operation: str = "search") -> Callable[[str, str], None]:
    """Refuse (403) a parameter that a matching rule blocks for a type: explicitly, or because it
    reads an element the rule's property filters redact."""

    def check(resource_type: str, code: str) -> None:
        rule = rules.blocked_params(ctx, operation, resource_type).get(code)
        if rule is not None:
            raise rules.refuse_param(code, resource_type, rule)

    return check


# --- links the caller's rules hide ---------------------------------------------------------------
# A property filter that removes a reference (Observation.subject), or a blocked parameter or include,
# hides a link between two resources. Every route that follows links asks `rules.hidden_links` of the
# rule that authorises the row holding the reference; a request naming such a route outright is
# refused (403), a wildcard skips the links that are hidden for the rows whose rule hides them.


def refuse_compartment(compartment_type: str, member_type: str) -> FhirError:
    return error(
        403,
        "forbidden",
        f"A {compartment_type} compartment search of {member_type} is not allowed for your role: "
        f"membership follows references of {member_type} that your access hides",
    )


def compartment_links(
    ctx: AccessContext,
    operation: str,
    compartment: tuple[str, str],
    types: list[str],
    listed: list[str] | None,
    *,
    named: bool,
) -> Q:
    """What a compartment search (or `$everything`) of `types` must leave out because a row's
    authorising rule hides a reference through which it belongs to the compartment: Q() when nothing.
    `named`: the request names these types (`Patient/x/Observation`, `_type=`): refuse (403) instead.
    `listed`: the types the listing's rule CASE is computed over (see rules.rule_case)."""
    if ctx.role == SYSTEM or not rules.hides_links(ctx, operation):
        return Q()
    compartment_type, compartment_id = compartment
    members = definitions.compartments()[compartment_type]
    condition = Q()
    for resource_type in types:
        linking = set(members.get(resource_type, ()))
        if resource_type == compartment_type and not compartment_id:
            continue  # every patient's record: the Patients themselves are in it without a link
        hiding = [
            p for p, links in rules.hiding_rules(ctx, operation, resource_type).items() if links & linking
        ]
        if not hiding:
            continue
        if named:
            raise refuse_compartment(compartment_type, resource_type)
        skipped = Q(resource_type=resource_type) & rules.authorised_by(ctx, operation, listed, hiding)
        if resource_type == compartment_type and compartment_id:
            # The focus resource is in its own compartment without following any link.
            skipped &= ~Q(fhir_id=compartment_id)
        condition &= ~skipped
    return condition


def hidden_link_rows(ctx: AccessContext, operation: str, source_types: Iterable[str] | None) -> Q | None:
    """ReferenceIndex rows (a Q over that table) held by resources of `source_types` (None: any type)
    whose authorising rule for `operation` hides the row's parameter: links a wildcard include, a
    revinclude or `$everything` must not follow. None when the caller's rules hide no link."""
    if ctx.role == SYSTEM or not rules.hides_links(ctx, operation):
        return None
    candidates = definitions.resource_types() if source_types is None else source_types
    parts = []
    for resource_type in sorted(set(candidates)):
        for position, links in rules.hiding_rules(ctx, operation, resource_type).items():
            holders = (
                Resource.objects.system("rows whose rule hides a link")
                .filter(resource_type=resource_type)
                .filter(rules.authorised_by(ctx, operation, [resource_type], [position]))
                .values("pk")
            )
            parts.append(Q(resource_type=resource_type, param__in=sorted(links), resource_id__in=holders))
    if not parts:
        return None
    out = parts[0]
    for part in parts[1:]:
        out |= part
    return out


def row_hidden_links(ctx: AccessContext, resource_type: str, position: int | None) -> frozenset[str]:
    """The links a row's authorising rule (its position in the rule CASE) hides."""
    rule = rules.rule_at(ctx, position)
    return frozenset() if rule is None else rules.hidden_links(rule, resource_type)
