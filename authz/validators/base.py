"""What every validator is: two faces over the same decision.

`narrowing(ctx, resource_type)` is a Q over `resources.models.Resource` rows (fields `pk`,
`resource_type`, `fhir_id`; index tables and CompartmentMembership joined through subqueries on
`resource_id`) that keeps exactly the rows of that type the validator lets `ctx` see; searches,
includes, chains and single reads all run it in SQL, so there is no per-row Python. `None` means the
validator cannot narrow a search by itself (FhirPath without a `search`).

`check(ctx, resource)` is an extra test in Python on one resource's JSON (a dict), for validators
that need one (FhirPath); SQL-only validators return None ("nothing to add"). A single resource is
allowed when its stored row matches the narrowing (if any) and `check` is not False.

Two more faces serve writes (resources/services.py, authz/grants.py):

- `grant_basis(ctx)` / `basis_types(ctx)`: the facts this validator's grants depend on for the
  caller (its patients, organisations, care teams), as a set of `(kind, id)` items, and the
  resource types whose writes can change them. A write of such a type is refused when the caller's
  basis after it holds an item it did not hold before (no write widens its writer's own access).
- `patient_writes(ctx)`: the Patient compartments this validator lets the caller write into, as a
  condition on `CompartmentMembership.compartment_id` (None: every compartment). A written resource
  must not enter a Patient compartment outside the union of these over the rules covering the write.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from django.db.models import Q

if TYPE_CHECKING:
    from authz.context import AccessContext


class RuleError(ValueError):
    """A rule that cannot be loaded: the message says what is wrong (the loader adds the rule's name)."""


class Validator:
    name: ClassVar[str]
    # True when `check` returns a verdict (Python on the body), not None.
    checks_body: ClassVar[bool] = False

    def __init__(self, **params: Any) -> None:
        if params:
            raise RuleError(f"{self.name} takes no parameters (got {', '.join(sorted(params))})")

    def narrowing(self, ctx: AccessContext, resource_type: str) -> Q | None:
        raise NotImplementedError

    def check(self, ctx: AccessContext, resource: dict) -> bool | None:
        return None

    def row_condition(self, ctx: AccessContext, resource_type: str) -> Q | None:
        """The same decision as `narrowing`, phrased for one already-identified row (single reads and
        write checks): validators whose narrowing builds a whole set may answer with a correlated
        EXISTS that probes just that row."""
        return self.narrowing(ctx, resource_type)

    def depends_only_on_identity(self, ctx: AccessContext) -> bool:
        """Whether `row_condition` is a function of the caller's identity alone, with nothing looked
        up during the request baked into it (then its compiled SQL may be reused, rules.py)."""
        return False

    def grant_basis(self, ctx: AccessContext) -> frozenset[tuple[str, str]]:
        """What this validator's grants for `ctx` rest on, as `(kind, id)` items: ("patient", id) for a
        Patient compartment, ("organization", id), ("care-team", id), ("identity", digest). Evaluated
        now (not as a subquery), so the write checks can compare before and after."""
        return frozenset()

    def basis_types(self, ctx: AccessContext) -> frozenset[str]:
        """Resource types whose writes can change `grant_basis(ctx)`."""
        return frozenset()

    def patient_writes(self, ctx: AccessContext) -> Q | None:
        """The Patient compartments (a condition on CompartmentMembership.compartment_id) this
        validator lets `ctx` place data in; None: every one. Default: none."""
        return NO_COMPARTMENT

    def patient_writes_key(self, ctx: AccessContext) -> tuple | None:
        """What `patient_writes(ctx)` depends on besides the caller's identity, as a hashable value
        (the compiled check is then reused, authz/grants.py); None when it cannot be told."""
        return () if self.depends_only_on_identity(ctx) else None

    def can_narrow(self) -> bool:
        """Whether `narrowing` gives a Q (whoever asks); rules granting searches need one."""
        return True

    def params(self) -> dict[str, Any]:
        """The parameters as written in YAML (for dump_rules); {} when there are none."""
        return {}

    def as_yaml(self) -> str | dict:
        params = self.params()
        return {self.name: params} if params else self.name


NOTHING = Q(pk__in=[])
EVERYTHING = Q()
# No compartment at all (a condition on CompartmentMembership.compartment_id that nothing matches).
NO_COMPARTMENT = Q(compartment_id__in=[])


def patient_ids_condition(ids) -> Q:
    """A condition on CompartmentMembership.compartment_id: one of `ids` (a list or a subquery)."""
    return Q(compartment_id__in=ids)
