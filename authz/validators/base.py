"""What every validator is: two faces over the same decision.

`narrowing(ctx, resource_type)` is a Q over `resources.models.Resource` rows (fields `pk`,
`resource_type`, `fhir_id`; index tables and CompartmentMembership joined through subqueries on
`resource_id`) that keeps exactly the rows of that type the validator lets `ctx` see; searches,
includes, chains and single reads all run it in SQL, so there is no per-row Python. `None` means the
validator cannot narrow a search by itself (FhirPath without a `search`).

`check(ctx, resource)` is an extra test in Python on one resource's JSON (a dict), for validators
that need one (FhirPath); SQL-only validators return None ("nothing to add"). A single resource is
allowed when its stored row matches the narrowing (if any) and `check` is not False.
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
