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
from ..models import Resource

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

    `compile(ctx, resource_type, name, value)` compiles one parameter; `target_scope(type)` narrows
    every resource reached through a chain or `_has`, so a chain cannot reveal what a read refuses.
    """

    compile: Callable[[Context, str, str, str], Q]
    base_urls: tuple[str, ...] = ()
    target_scope: Callable[[str], Q] | None = None
    depth: int = 0

    def deeper(self) -> Context:
        return replace(self, depth=self.depth + 1)

    def targets(self, resource_type: str) -> QuerySet:
        """Current resources of a type reached through a chain or _has (one place to narrow them)."""
        rows = Resource.objects.filter(resource_type=resource_type, deleted=False)
        if self.target_scope is not None:
            rows = rows.filter(self.target_scope(resource_type))
        return rows


def index_rows(model: type[Model], resource_type: str, param: str, condition: Q | None = None) -> Exists:
    """EXISTS (rows of `model` for the outer resource and this parameter [matching `condition`])."""
    key = Q(resource_id=OuterRef("pk"), resource_type=resource_type, param=param)
    return Exists(model.objects.filter(key if condition is None else key & condition))
