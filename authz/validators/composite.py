"""`AnyOf` and `AllOf`: validators combined, written as a list of validator specs.

    validator:
      AnyOf: [PatientCompartment, {LegitimateInterest: {inherit: true}}]

`AllOf` allows what every part allows: its narrowing is the AND of the parts that narrow (None when
none does), its check the AND of the parts that check bodies. That is exact, because a resource is
allowed when it matches the narrowing and passes the check, and AND distributes over both.

`AnyOf` allows what some part allows, and that does not split the same way: "(SQL of A and body
check of A) or (SQL of B and body check of B)" is not "(SQL A or SQL B) and (check A or check B)",
which would let B's rows through on A's check. The rule engine asks a validator for one Q and one
check, so AnyOf accepts only parts it can combine exactly:

- parts that all decide in SQL only (no body check): the narrowing is the OR of theirs;
- parts that all decide on the body only (no narrowing, e.g. FhirPath without `search`): no
  narrowing, and the check is the OR of theirs.

Anything else (FhirPath with a search, or an AllOf containing FhirPath, next to other parts) is
refused at load time; write two rules instead, since rules are ORed by the chain itself.

Writes: both rest on the union of their parts' grant bases. The Patient compartments they let a
caller write into are the union of the parts' (AnyOf) or their intersection (AllOf, where a part
with no limit of its own, such as FhirPath, leaves the others' limit).

Neither combination is in FHIR; the parts cite their own sources.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db.models import Q

from .base import EVERYTHING, RuleError, Validator

if TYPE_CHECKING:
    from collections.abc import Iterable

    from authz.context import AccessContext


class _Composite(Validator):
    def __init__(self, parts: object = None, **params: Any) -> None:
        if params or not isinstance(parts, list) or not parts:
            raise RuleError(
                f"{self.name} takes a non-empty list of validators, like [PatientCompartment, CareTeam]"
            )
        from . import build

        self.parts: list[Validator] = [build(spec) for spec in parts]
        self.checks_body = any(part.checks_body for part in self.parts)  # type: ignore[misc]

    def params(self) -> list:  # type: ignore[override] - the YAML form is a list
        return [part.as_yaml() for part in self.parts]

    def grant_basis(self, ctx: AccessContext) -> frozenset[tuple[str, str]]:
        out: frozenset[tuple[str, str]] = frozenset()
        for part in self.parts:
            out |= part.grant_basis(ctx)
        return out

    def basis_types(self, ctx: AccessContext) -> frozenset[str]:
        out: frozenset[str] = frozenset()
        for part in self.parts:
            out |= part.basis_types(ctx)
        return out

    def patient_writes_key(self, ctx: AccessContext) -> tuple | None:
        keys = tuple(part.patient_writes_key(ctx) for part in self.parts)
        return None if any(key is None for key in keys) else keys

    def validate_types(self, resource_types: Iterable[str] | None) -> None:
        """Pass the rule's types on to the parts that need them (FhirPath searches)."""
        for part in self.parts:
            validate = getattr(part, "validate_types", None)
            if validate is not None:
                validate(resource_types)


class AllOf(_Composite):
    name = "AllOf"

    def can_narrow(self) -> bool:
        return any(part.can_narrow() for part in self.parts)

    def narrowing(self, ctx: AccessContext, resource_type: str) -> Q | None:
        conditions = [q for q in (part.narrowing(ctx, resource_type) for part in self.parts) if q is not None]
        if not conditions:
            return None
        combined = conditions[0]
        for condition in conditions[1:]:
            combined &= condition
        return combined

    def check(self, ctx: AccessContext, resource: dict) -> bool | None:
        if not self.checks_body:
            return None
        return all(part.check(ctx, resource) is True for part in self.parts if part.checks_body)

    def patient_writes(self, ctx: AccessContext) -> Q | None:
        # Every part must allow the compartment; a part with no limit of its own (None) adds none.
        conditions = [q for q in (part.patient_writes(ctx) for part in self.parts) if q is not None]
        if not conditions:
            return None
        combined = conditions[0]
        for condition in conditions[1:]:
            combined &= condition
        return combined


class AnyOf(_Composite):
    name = "AnyOf"

    def __init__(self, parts: object = None, **params: Any) -> None:
        super().__init__(parts, **params)
        sql_only = all(not part.checks_body for part in self.parts)
        body_only = all(part.checks_body and not part.can_narrow() for part in self.parts)
        if not (sql_only or body_only):
            mixed = ", ".join(part.name for part in self.parts)
            raise RuleError(
                f"AnyOf cannot mix FhirPath (or another body check) with validators that narrow in SQL "
                f"({mixed}): one resource would be allowed on one part's check and another part's rows; "
                "write one rule per part instead"
            )

    def can_narrow(self) -> bool:
        return all(part.can_narrow() for part in self.parts)

    def narrowing(self, ctx: AccessContext, resource_type: str) -> Q | None:
        conditions = [part.narrowing(ctx, resource_type) for part in self.parts]
        if any(q is None for q in conditions):
            return None  # a part that cannot narrow leaves the union unbounded
        if any(not q for q in conditions):
            # An empty Q (everything) vanishes from an OR in Django rather than absorbing it.
            return EVERYTHING
        combined = conditions[0]
        for condition in conditions[1:]:
            combined |= condition
        return combined

    def check(self, ctx: AccessContext, resource: dict) -> bool | None:
        if not self.checks_body:
            return None
        return any(part.check(ctx, resource) is True for part in self.parts)

    def patient_writes(self, ctx: AccessContext) -> Q | None:
        conditions = [part.patient_writes(ctx) for part in self.parts]
        if any(q is None for q in conditions):
            return None
        combined = conditions[0]
        for condition in conditions[1:]:
            combined |= condition
        return combined
