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
