"""Token minting and exchange through the door: `$api-token` on an identity resource (operation
`generate-token`, decided on that identity) and `$exchange-token` (a one-time token traded for a
durable one). The secret is returned once, to the adapter, and never recorded."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from authz import tokens
from authz.context import PUBLIC, AccessContext
from authz.errors import credentials_required
from authz.models import ApiToken
from authz.rules import authorize
from resources.outcomes import bad_request, error
from resources.selectors import resource_read

from .door import interaction


@dataclass(frozen=True)
class Minted:
    token: ApiToken
    secret: str


def _created(minted: Minted) -> int:
    return 201


@interaction("generate-token", writes=True, status=_created)
def mint_token(
    ctx: AccessContext,
    *,
    resource_type: str,
    fhir_id: str,
    options: Callable[[], dict],
) -> Minted:
    """`options()` parses the operation's input (kind, lifetime, label); it is called once the caller
    is known to be allowed, so a refused caller learns nothing from the input's validation."""
    authorize(ctx, "generate-token", resource_type)
    # The rule must allow generate-token on this very identity (404 when not, as for a read).
    resource_read(ctx, resource_type=resource_type, fhir_id=fhir_id, operation="generate-token")
    given = options()
    kind, lifetime, label = given.get("kind"), given.get("lifetime"), given.get("label", "")
    try:
        token, secret = tokens.mint(
            role=resource_type,
            identity=f"{resource_type}/{fhir_id}",
            kind=kind or ApiToken.DURABLE,
            ttl=lifetime,
            label=label,
            created_by=_who(ctx),
        )
    except tokens.TokenError as exc:
        raise bad_request(str(exc)) from exc
    return Minted(token, secret)


@interaction("exchange-token", writes=True, status=_created)
def exchange_token(ctx: AccessContext, *, options: Callable[[], dict]) -> Minted:
    if ctx.role == PUBLIC:
        raise credentials_required("Present the one-time token as 'Authorization: Bearer <token>'")
    one_time = _presented_token(ctx)
    if one_time is None or one_time.kind != ApiToken.ONE_TIME:
        raise error(403, "forbidden", "Only a one-time API token can be exchanged for a durable one")
    given = options()
    lifetime, label = given.get("lifetime"), given.get("label", "")
    try:
        token, secret = tokens.exchange(one_time, ttl=lifetime, label=label)
    except tokens.TokenError as exc:
        raise bad_request(str(exc)) from exc
    return Minted(token, secret)


def _presented_token(ctx: AccessContext) -> ApiToken | None:
    if ctx.method != "api-token":
        return None
    token_id = ctx.credential.split(":", 1)[1].split(" ", 1)[0]
    return ApiToken.objects.filter(pk=int(token_id)).first()


def _who(ctx: AccessContext) -> str:
    return ctx.identity or ctx.user or ctx.client_id or ctx.credential or ctx.role
