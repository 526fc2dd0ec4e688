"""Which operations a caller may perform.

For now this is the default rule set of a fresh installation: the `Admin` role (and the platform
itself, `System`) may do everything, every other role nothing. The ordered, database-stored rule
chain with validators and search narrowing replaces the body of `authorize` without changing its
callers. SMART scopes on the credential are a ceiling on top of whatever the rules grant.
"""

from __future__ import annotations

from resources.outcomes import error

from .context import PUBLIC, SYSTEM, AccessContext
from .errors import credentials_required

OPERATIONS = (
    "read",
    "vread",
    "search",
    "history",
    "create",
    "update",
    "patch",
    "delete",
    "transaction",
    "graphql-read",
    "graphql-search",
    "subscribe",
    "bulk-export",
    "everything",
    "generate-token",
)

_FULL_ACCESS = frozenset({"Admin", SYSTEM})


def authorize(ctx: AccessContext, operation: str, resource_type: str) -> None:
    """Refuse (401 for an anonymous caller, 403 otherwise) unless `operation` on `resource_type` is allowed.

    `resource_type` "*" stands for every type (a system-wide search or history).
    """
    if ctx.role == SYSTEM:
        return
    if ctx.scopes is not None and not ctx.scopes.permits(
        operation, resource_type, patient_context=ctx.identity_type == "Patient"
    ):
        raise error(
            403,
            "forbidden",
            f"The token's scopes do not permit {operation} on {_what(resource_type)}",
        )
    if ctx.role in _FULL_ACCESS:
        return
    if ctx.role == PUBLIC:
        raise credentials_required(f"Authentication is required to {operation} {_what(resource_type)}")
    raise error(403, "forbidden", f"Role '{ctx.role}' may not {operation} {_what(resource_type)}")


def _what(resource_type: str) -> str:
    return "resources of any type" if resource_type == "*" else resource_type
