"""The operator's actions, through the door like every other interaction: replacing the rule set,
minting and revoking API tokens, exporting the audit log. The management commands and the console
(Django admin) call these; each leaves one audit row naming the operator and the action.

They are not decided by the rule chain (which governs FHIR data): the operator is the platform
itself (a command run on the server) or a staff user of the console, whose Django permissions the
admin checks. A caller that is neither is refused.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from audit import export
from authz import ruleset, tokens
from authz.context import SYSTEM, AccessContext, Origin
from authz.models import ApiToken
from authz.rules import CompiledRule
from authz.validators.base import RuleError
from resources.outcomes import bad_request, error

from .door import interaction
from .tokens import Minted

CONSOLE = "console"


def operator(
    who: str, *, transport: str, action: str, client_ip: str | None = None, user_agent: str = ""
) -> AccessContext:
    """The context of an operator: `who` is the console user's name or the command's name."""
    return AccessContext(
        role=SYSTEM,
        request_id=uuid.uuid4().hex,
        method=transport,
        user=who if transport == CONSOLE else "",
        origin=Origin(
            transport=transport, method=transport, path=action, client_ip=client_ip, user_agent=user_agent
        ),
    )


def _require_operator(ctx: AccessContext) -> None:
    if ctx.role != SYSTEM:
        raise error(403, "forbidden", "Only an operator (the console or a server command) may do this")


@interaction("rules-change", writes=True)
def replace_rules(ctx: AccessContext, *, rules: list[dict]) -> tuple[CompiledRule, ...]:
    """The whole rule chain replaced by `rules` (all or nothing; a bad rule is a 400)."""
    _require_operator(ctx)
    try:
        return ruleset.replace_rules(rules)
    except RuleError as exc:
        raise bad_request(str(exc)) from exc


def _created(minted: Minted) -> int:
    return 201


@interaction("token-mint", writes=True, status=_created)
def issue_token(
    ctx: AccessContext,
    *,
    role: str,
    identity: str = "",
    kind: str = ApiToken.DURABLE,
    ttl: int | None = None,
    label: str = "",
) -> Minted:
    _require_operator(ctx)
    try:
        token, secret = tokens.mint(
            role=role,
            identity=identity,
            kind=kind,
            ttl=ttl,
            label=label,
            created_by=f"{ctx.method}:{ctx.user}" if ctx.user else ctx.method,
        )
    except tokens.TokenError as exc:
        raise bad_request(str(exc)) from exc
    return Minted(token, secret)


@interaction("token-revoke", writes=True)
def revoke_token(ctx: AccessContext, *, token: str) -> ApiToken:
    """Revoke by secret or id; a token that does not exist is a 404."""
    _require_operator(ctx)
    try:
        return tokens.revoke(token)
    except tokens.TokenError as exc:
        raise bad_request(str(exc)) from exc


@interaction("audit-export")
def export_audit(ctx: AccessContext, *, write: Callable[[Callable[..., int]], int]) -> int:
    """Run `write(export.export)`: the caller opens its destination and streams the rows with the
    exporter (audit/export.py); the count of rows is returned and the export itself is audited."""
    _require_operator(ctx)
    return write(export.export)
