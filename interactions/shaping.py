"""What a write hands back: the result exactly as a read of it would show it.

A create, update, patch, conditional match or transaction entry answers with a resource; that
answer passes through the same decision and property filters as `GET [type]/[id]` of the result,
so a write can never show (or confirm) what the caller's read would redact or refuse.
"""

from __future__ import annotations

from dataclasses import replace

from authz import rules
from authz.context import SYSTEM, AccessContext
from resources import fhirjson
from resources.outcomes import FhirError
from resources.services import Stored


def as_read(ctx: AccessContext, stored: Stored, operation: str = "read") -> Stored | None:
    """`stored` shaped as the caller's read of it (`operation`: `read`, or `graphql-read` for a
    GraphQL mutation's answer), or None when that read would be refused."""
    if ctx.role == SYSTEM or stored.deleted:
        return stored
    try:
        rule = rules.decide(
            ctx, operation, stored.resource_type, stored.pk, lambda: fhirjson.loads(stored.body)
        )
    except FhirError:  # the caller may not read the type at all
        return None
    if rule is None:
        return None
    return replace(stored, body=rules.shape(rule, stored.body))
