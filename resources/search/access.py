"""The caller's view of the resources for every query a search builds: the access rules' narrowing
(Resource.objects.restrict) and the parameters their property filters and blocklists refuse."""

from __future__ import annotations

from collections.abc import Callable

from django.db.models import QuerySet

from authz import rules
from authz.context import AccessContext

from ..models import Resource


def rows(ctx: AccessContext, operation: str, types: list[str] | None = None) -> QuerySet:
    return Resource.objects.restrict(ctx, operation, types)


def guard(ctx: AccessContext, operation: str = "search") -> Callable[[str, str], None]:
    """Refuse (403) a parameter that a matching rule blocks for a type: explicitly, or because it
    reads an element the rule's property filters redact."""

    def check(resource_type: str, code: str) -> None:
        rule = rules.blocked_params(ctx, operation, resource_type).get(code)
        if rule is not None:
            raise rules.refuse_param(code, resource_type, rule)

    return check
