"""What a write may do to access itself: it must not widen its writer's own access, and it must not
place data in a Patient compartment its writer may not write to.

Access control is the server's business in FHIR (https://hl7.org/fhir/R4/security.html); the two
invariants here are this server's, stated in docs/rules.md ("Writes"):

1. No widening. Every validator names the facts its grants rest on for a caller, its *grant basis*
   (`Validator.grant_basis`: the caller's patients, organisations, care teams, its identity resource
   for FhirPath), and the resource types whose writes can change them (`basis_types`). A rule with
   an identity filter adds `("rule", name)` while the filter passes. A write of such a type computes
   the caller's basis before it and again after it, inside the same database transaction and with
   fresh lookups (AccessContext.cache memoises lookups per request), and is refused (403, the whole
   write rolled back) when the basis after holds an item the basis before did not, under a rule at
   least as wide. New items that grant nothing beyond what the caller wrote itself pass: a Patient,
   CareTeam, Practitioner or Organization the same request wrote, when nothing but the request's
   own resources is in that Patient's compartment or refers to that Organization. A rule with
   `may-widen-access: true` lifts the check for the writes it authorises. A transaction is judged
   once, at its end, against the grants before it started.
2. No planting. After a create, update or patch, every Patient compartment the new version is in
   (CompartmentMembership rows, written at index time in the same transaction) must be one that some
   rule covering the write lets the caller write into (`Validator.patient_writes`): one SQL
   `EXISTS`. A Patient's Communication to its GP (a Practitioner compartment) is not limited.

Writes of other types (an Observation, the common case) pay for neither basis computation.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from django.core.exceptions import EmptyResultSet
from django.db import connection
from django.db.models import Q

from resources.models import CompartmentMembership, ReferenceIndex
from resources.outcomes import FhirError, error

from . import rules
from .context import SYSTEM, AccessContext

if TYPE_CHECKING:
    from .rules import CompiledRule

log = logging.getLogger(__name__)

Item = tuple[str, str]

_SESSION = ("authz.grants", "session")
# Memo entries a fresh context may keep: the rule chain in force is the same before and after.
_KEPT = (("rules",), ("rules-version",))


def refusal(operation: str, resource_type: str) -> FhirError:
    """The one answer for a write whose result the caller may not make: outside its rules, in a
    compartment it may not write to, or widening its own access. One text for all three, and for an
    update of a resource the caller may not read, so that none of them tells whether the id exists."""
    return error(
        403,
        "forbidden",
        f"Your rules do not allow {operation} of this {resource_type}: the result would be outside what "
        "you may write",
    )


# --- the grant basis -------------------------------------------------------------------------------


def _role_rules(ctx: AccessContext) -> list[CompiledRule]:
    return [rule for rule in rules._rules(ctx) if rule.role == ctx.role]


def basis_types(ctx: AccessContext) -> frozenset[str]:
    """Resource types whose writes can change what the caller's rules grant it."""

    def compute() -> frozenset[str]:
        types: set[str] = set()
        for rule in _role_rules(ctx):
            types |= rule.validator.basis_types(ctx)
            if rule.identity_check is not None and ctx.identity_type:
                types.add(ctx.identity_type)
        return frozenset(types)

    return ctx.memo(("authz.grants", "basis-types"), compute)


def _fresh(ctx: AccessContext) -> AccessContext:
    return dataclasses.replace(ctx, cache={key: ctx.cache[key] for key in _KEPT if key in ctx.cache})


def grant_basis(ctx: AccessContext) -> dict[Item, list[CompiledRule]]:
    """Every item the caller's grants rest on now, with the rules (of any operation) resting on it."""
    fresh = _fresh(ctx)
    out: dict[Item, list[CompiledRule]] = {}
    for rule in _role_rules(fresh):
        if not rules._identity_passes(fresh, rule):
            continue
        items = set(rule.validator.grant_basis(fresh))
        if rule.identity_check is not None:
            items.add(("rule", rule.name))
        for item in items:
            out.setdefault(item, []).append(rule)
    return out


def _covers(wide: CompiledRule, narrow: CompiledRule) -> bool:
    """Whether `wide` grants at least what `narrow` does on the same basis item: every operation and
    type, no property filter or the same ones, no parameter or include blocked that `narrow` allows."""
    if wide is narrow:
        return True
    return (
        (wide.operations is None or (narrow.operations is not None and narrow.operations <= wide.operations))
        and (wide.resources is None or (narrow.resources is not None and narrow.resources <= wide.resources))
        and (not wide.property_filters or wide.property_filters == narrow.property_filters)
        and wide.blocked_search_params <= narrow.blocked_search_params
        and wide.blocked_includes <= narrow.blocked_includes
    )


@dataclasses.dataclass
class Written:
    """What one request wrote: keys ("Type", "id") and Resource pks."""

    keys: set[tuple[str, str]] = dataclasses.field(default_factory=set)
    pks: set[int] = dataclasses.field(default_factory=set)


def _own_only(item: Item, written: Written) -> bool:
    """Whether a new basis item reaches nothing but what the same request wrote."""
    kind, fhir_id = item
    if kind == "patient":
        if ("Patient", fhir_id) not in written.keys:
            return False
        members = CompartmentMembership.objects.system("write guard: rows the request wrote").filter(
            compartment_type="Patient", compartment_id=fhir_id
        )
        return not members.exclude(resource_id__in=written.pks).exists()
    if kind == "organization":
        if ("Organization", fhir_id) not in written.keys:
            return False
        referring = ReferenceIndex.objects.system("write guard: rows the request wrote").filter(
            target_type="Organization", target_id=fhir_id
        )
        return not referring.exclude(resource_id__in=written.pks).exists()
    if kind == "care-team":
        return ("CareTeam", fhir_id) in written.keys  # its patients are items of their own
    if kind == "practitioner":
        return ("Practitioner", fhir_id) in written.keys
    return False


def widening(
    before: dict[Item, list[CompiledRule]], after: dict[Item, list[CompiledRule]], written: Written
) -> Item | None:
    """The first item of `after` that `before` does not hold under an equally wide rule, if any."""
    for item, holders in after.items():
        had = before.get(item, ())
        if all(any(_covers(old, new) for old in had) for new in holders):
            continue
        if _own_only(item, written):
            continue
        return item
    return None


# --- one write, or one transaction ------------------------------------------------------------------


@dataclasses.dataclass
class WriteGuard:
    ctx: AccessContext
    before: dict[Item, list[CompiledRule]]
    types: frozenset[str]
    written: Written = dataclasses.field(default_factory=Written)
    # The writes of a basis type: (operation, type, id, whether its authorising rule allows widening).
    basis_writes: list[tuple[str, str, str, bool]] = dataclasses.field(default_factory=list)

    def wrote(
        self, operation: str, resource_type: str, fhir_id: str, pk: int | None, rule: CompiledRule | None
    ) -> None:
        self.written.keys.add((resource_type, fhir_id))
        if pk is not None:
            self.written.pks.add(pk)
        if resource_type in self.types:
            widen = bool(rule and rule.may_widen_access)
            self.basis_writes.append((operation, resource_type, fhir_id, widen))

    def check(self) -> None:
        """Refuse (raise) when the caller's grants now rest on something new."""
        if all(widen for *_, widen in self.basis_writes):
            return  # nothing written that could widen, or only under rules that allow it
        found = widening(self.before, grant_basis(self.ctx), self.written)
        if found is not None:
            operation, resource_type, fhir_id, _ = self.basis_writes[0]
            # The answer names no reason (it must not differ from other refusals); the log does.
            log.info(
                "%s refused for %s: it would widen its access (%s %s)", operation, self.ctx.identity, *found
            )
            raise WideningRefused(operation, resource_type, fhir_id, found)


class WideningRefused(FhirError):
    """403: the write would widen its writer's own access. `key` names the first write of a type
    that can change grants (a transaction reports the entry that wrote it); `item` what widened."""

    def __init__(self, operation: str, resource_type: str, fhir_id: str, item: Item):
        refused = refusal(operation, resource_type)
        super().__init__(refused.status, refused.issues)
        self.key = (resource_type, fhir_id)
        self.item = item


@contextmanager
def write_guard(ctx: AccessContext, types: Iterable[str]) -> Iterator[WriteGuard | None]:
    """Around one write (or one transaction) of resources of `types`, inside its database
    transaction: note the caller's grant basis before, check it after. Nothing to do (None) for the
    platform, for types that change no grant of the caller's rules, or inside an enclosing guard (a
    transaction's entries are judged together at its end)."""
    if ctx.role == SYSTEM or _SESSION in ctx.cache:
        yield None
        return
    relevant = frozenset(types) & basis_types(ctx)
    if not relevant:
        yield None
        return
    guard = WriteGuard(ctx, grant_basis(ctx), relevant)
    ctx.cache[_SESSION] = guard
    try:
        yield guard
        guard.check()
    finally:
        ctx.cache.pop(_SESSION, None)


def wrote(
    ctx: AccessContext,
    operation: str,
    resource_type: str,
    fhir_id: str,
    pk: int | None,
    rule: CompiledRule | None,
) -> None:
    """Tell the enclosing guard, if any, what was written, how and under which rule."""
    guard = ctx.cache.get(_SESSION)
    if guard is not None:
        guard.wrote(operation, resource_type, fhir_id, pk, rule)


# --- where a write may place data ----------------------------------------------------------------


# Compiling the check costs several times running it (a Patient's POST Observation, profiled: ~4 ms
# of ORM work against a fraction of a millisecond of SQL). Its SQL depends on the rule set, the
# caller and what each validator bakes into it (`patient_writes_key`), so it is kept per those,
# with a stand-in for the row's pk (as rules.py does for decisions).
_CHECKS: dict[tuple, tuple[str, tuple] | None] = {}
_CHECKS_MAX = 4096
_STAND_IN_PK = -7_318_204_612


def outside_patient_compartments(ctx: AccessContext, operation: str, resource_type: str, pk: int) -> bool:
    """Whether the stored row `pk` is in a Patient compartment that no rule covering this write lets
    the caller write into (one query over its membership rows)."""
    if ctx.role == SYSTEM:
        return False
    covering = rules.matching(ctx, operation, resource_type)
    keys = tuple(rule.validator.patient_writes_key(ctx) for rule in covering)
    key = None
    if all(k is not None for k in keys):
        # The rule tuple itself (not its id): held by the key, it cannot be reused by a later rule set.
        key = (rules._rules(ctx), tuple(r.position for r in covering), ctx.role, ctx.identity, keys)
    if key is not None and key in _CHECKS:
        compiled = _CHECKS[key]
    else:
        compiled = _compile_check(ctx, covering)
        if key is not None:
            if len(_CHECKS) >= _CHECKS_MAX:
                _CHECKS.clear()
            _CHECKS[key] = compiled
    if compiled is None:
        return False  # some rule lets the caller write into every compartment
    sql, params = compiled
    with connection.cursor() as cursor:
        cursor.execute(sql, [pk if p == _STAND_IN_PK else p for p in params])
        return cursor.fetchone() is not None


def _compile_check(ctx: AccessContext, covering: list[CompiledRule]) -> tuple[str, tuple] | None:
    allowed: Q | None = None
    for rule in covering:
        condition = rule.validator.patient_writes(ctx)
        if condition is None:
            return None
        allowed = condition if allowed is None else allowed | condition
    members = CompartmentMembership.objects.system("write guard: rows the request wrote").filter(
        resource_id=_STAND_IN_PK, compartment_type="Patient"
    )
    if allowed is not None:
        members = members.exclude(allowed)
    try:
        sql, params = members.values_list("pk")[:1].query.sql_with_params()
    except EmptyResultSet:
        return ("SELECT 1 WHERE 1 = 0", ())  # no membership row can match
    return sql, tuple(params)
