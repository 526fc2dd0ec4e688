"""The fail-closed manager of FHIR resources: `Resource.objects`.

A queryset from it refuses to run (or to be used inside another query) until it has been scoped,
either by `.restrict(ctx, operation)`, which narrows it in SQL to what the caller's rules allow, or
by `.system(reason)`, the platform acting for itself (workers, commands, write bookkeeping). The
escape hatch is meant to be greppable: tests/test_system_scope.py lists every call site.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import models

if TYPE_CHECKING:
    from .context import AccessContext


class UnscopedQuery(RuntimeError):
    """A query over FHIR resources that was neither restricted to a caller nor marked as system."""


class ScopedQuerySet(models.QuerySet):
    _scope: str | None = None

    def restrict(self, ctx: AccessContext, operation: str, types: list[str] | None = None) -> ScopedQuerySet:
        """Only the rows `ctx` may `operation` under its rules (an empty queryset when none may).
        `types`: the resource types the query is about, when known (keeps the SQL smaller)."""
        from .rules import narrowing

        condition = narrowing(ctx, operation, types)
        scoped = self.filter(condition) if condition is not None else self.none()
        scoped._scope = f"restrict:{operation}"
        return scoped

    def system(self, reason: str) -> ScopedQuerySet:
        """Unrestricted, for the platform itself; `reason` says why (it shows up in reviews and logs)."""
        if not reason:
            raise ValueError("system() needs a reason")
        scoped = self._chain()
        scoped._scope = f"system:{reason}"
        return scoped

    def _chain(self):
        clone = super()._chain()
        clone._scope = self._scope
        return clone

    def _clone(self):
        clone = super()._clone()
        clone._scope = self._scope
        return clone

    def _require_scope(self) -> None:
        if self._scope is None:
            raise UnscopedQuery(
                "Resource query without .restrict(ctx, operation) or .system(reason): refused (fail closed)"
            )

    def _fetch_all(self):
        self._require_scope()
        super()._fetch_all()

    def iterator(self, *args, **kwargs):
        self._require_scope()
        return super().iterator(*args, **kwargs)

    def count(self):
        self._require_scope()
        return super().count()

    def exists(self):
        self._require_scope()
        return super().exists()

    def aggregate(self, *args, **kwargs):
        self._require_scope()
        return super().aggregate(*args, **kwargs)

    def update(self, **kwargs):
        self._require_scope()
        return super().update(**kwargs)

    def delete(self):
        self._require_scope()
        return super().delete()

    def explain(self, **options):
        self._require_scope()
        return super().explain(**options)

    def resolve_expression(self, *args, **kwargs):
        # Used as a subquery (`pk__in=qs`, Exists(qs)): the inner rows must be scoped too.
        self._require_scope()
        return super().resolve_expression(*args, **kwargs)


class ResourceManager(models.Manager.from_queryset(ScopedQuerySet)):
    pass


class ContentQuerySet(ScopedQuerySet):
    """The fail-closed queryset of the tables that hold a resource's content besides its current row:
    its versions (bodies) and its index rows (values taken from its body). Fetching, counting or
    changing rows needs a scope, as for `Resource`; `restrict(ctx, operation)` keeps the rows of the
    resources the caller may `operation` now. Used as a subquery of a Resource query (a validator's
    membership probe, a search criterion) it needs none: that outer query is itself scoped, and a
    subquery hands nothing back but candidate keys."""

    def restrict(self, ctx: AccessContext, operation: str, types: list[str] | None = None) -> ContentQuerySet:
        from resources.models import Resource

        visible = Resource.objects.restrict(ctx, operation, types).values("pk")
        scoped = self.filter(resource_id__in=visible)
        scoped._scope = f"restrict:{operation}"
        return scoped

    def resolve_expression(self, *args, **kwargs):
        return models.QuerySet.resolve_expression(self, *args, **kwargs)


class ContentManager(models.Manager.from_queryset(ContentQuerySet)):
    pass
