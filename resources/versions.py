"""Deciding a version on its own content: vread and every history level answer exactly what a read
of that version would, had it been the current one (https://hl7.org/fhir/R4/http.html#vread, #history).

The rules decide in SQL over the current row and its index rows (authz/validators/), which describe
the current version only. An older version (or any version of a deleted resource) is decided by
making it current for a moment: inside a savepoint the resource row takes that version's body and
index rows, the caller's rules decide it as for a read, and the savepoint is rolled back. Nothing
is kept, the decision is the one a read would have made, and no validator needs a second
implementation. It costs a few statements per version, so it is done only where it must be: a
caller whose first rule for the type allows every resource needs no decision, and the current
version of a live resource is decided as usual.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator

from django.db import connection, transaction

from audit.services import note_rule
from authz import rules
from authz.context import SYSTEM, AccessContext
from authz.rules import CompiledRule

from . import fhirjson
from .indexing import index_resources
from .models import Resource

_RESTORE_SQL = f"UPDATE {Resource._meta.db_table} SET deleted = %s, body = %s WHERE id = %s"


def whole_type_rule(ctx: AccessContext, operation: str, resource_type: str) -> CompiledRule | None:
    """The caller's first rule for `operation` on this one type, when it allows every resource of it
    (then it decides, and shapes, every version without looking at it); None otherwise."""
    if ctx.role == SYSTEM:
        return None
    first = rules.matching(ctx, operation, resource_type)
    return first[0] if first and first[0].unconditional else None


def decide_version(
    ctx: AccessContext, operation: str, resource_type: str, fhir_id: str, pk: int, body: str
) -> CompiledRule | None:
    """The rule that would authorise `operation` on this resource if `body` were its current
    content, or None. Type-level refusals raise, as for a read."""
    allowed = rules.authorize(ctx, operation, resource_type)
    if allowed[0].unconditional:
        note_rule(ctx, allowed[0].name, allowed[0].property_filters)
        return allowed[0]
    parsed = fhirjson.loads(body)
    with standing_in(ctx, resource_type, fhir_id, pk, body, parsed) as scratch:
        rule = rules.decide(scratch, operation, resource_type, pk, lambda: parsed)
    if rule is not None:
        note_rule(ctx, rule.name, rule.property_filters)
    return rule


@contextlib.contextmanager
def standing_in(
    ctx: AccessContext, resource_type: str, fhir_id: str, pk: int, body: str, parsed: dict
) -> Iterator[AccessContext]:
    """Inside the block the resource row holds `body` as its live, current content (with its index
    rows), and everything the block wrote is rolled back when it ends. Yields a context of its own:
    lookups memoised while the version stands in for the current state (the caller's patients,
    organisations...) must not outlive it."""
    scratch = dataclasses.replace(ctx, cache={k: v for k, v in ctx.cache.items() if k == ("rules-version",)})
    with transaction.atomic():
        row = Resource(id=pk, resource_type=resource_type, fhir_id=fhir_id, deleted=False, body=body)
        with connection.cursor() as cursor:
            cursor.execute(_RESTORE_SQL, [False, body, pk])
        index_resources([(row, parsed)], fresh=False)
        yield scratch
        transaction.set_rollback(True)
