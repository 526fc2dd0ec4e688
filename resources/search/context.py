"""What every parameter compiler receives, and the one shape of index lookup they all produce.

Each criterion becomes an `EXISTS` over one index table keyed by (resource_type, param), correlated
to the outer `Resource` row (https://hl7.org/fhir/R4/search.html#ptypes), so the database walks the
index of that table instead of the resources.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from django.db.models import Exists, Model, OuterRef, Q, QuerySet

from ..definitions import SearchParam

# Chains and _has nest one subquery per level; deeper queries are refused rather than planned.
MAX_DEPTH = 4


@dataclass(frozen=True)
class Param:
    """One search parameter as it applies to `resource_type`."""

    resource_type: str
    definition: SearchParam

    @property
    def code(self) -> str:
        return self.definition.code

    @property
    def type(self) -> str:
        return self.definition.type


@dataclass(frozen=True)
class Context:
    """Options of one compilation, and the way back into it for chains and _has.

    `compile(ctx, resource_type, name, value)` compiles one parameter. `rows()` is the caller's view
    of the resources (Resource.objects restricted by the access rules, or the system's), so a chain
    or `_has` cannot filter by values a read would refuse; `guard(resource_type, code)` refuses a
    parameter the caller's rules block (403) before it is compiled.
    """

    compile: Callable[[Context, str, str, str], Q]
    rows: Callable[[str], QuerySet]
    base_urls: tuple[str, ...] = ()
    guard: Callable[[str, str], None] | None = None
    depth: int = 0

    def deeper(self) -> Context:
        return replace(self, depth=self.depth + 1)

    def targets(self, resource_type: str) -> QuerySet:
        """Current resources of a type reached through a chain or _has, as the caller may see them."""
        return self.rows(resource_type).filter(resource_type=resource_type, deleted=False)

    def check(self, resource_type: str, code: str) -> None:
        if self.guard is not None:
            self.guard(resource_type, code)


def index_rows(model: type[Model], resource_type: str, param: str, condition: Q | None = None) -> Exists:
    """EXISTS (rows of `model` for the outer resource and this parameter [matching `condition`])."""
    key = Q(resource_id=OuterRef("pk"), resource_type=resource_type, param=param)
    return Exists(model.objects.filter(key if condition is None else key & condition))
