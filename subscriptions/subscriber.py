"""The subscriber of a subscription, as a caller again at delivery time.

A notification is decided by the subscriber's own rules as they are when it is delivered, so the
context is rebuilt for every delivery from what SubscriptionState recorded (never a secret):

- an API token: the token must be neither revoked nor expired, and its identity must still exist;
- a local user (OAuth authorization code): the user must be active and still linked to an identity,
  whose current role counts;
- an OAuth client (client credentials): its client role must still be configured;
- an external JWT: its identity must still exist (the issuer's own revocation cannot be seen here);
- the platform itself (system writes): the System role.

`None` means the subscriber can no longer be a caller: nothing is delivered.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.utils import timezone

from authz import identity as identities
from authz.context import SYSTEM, AccessContext, Origin
from authz.models import ApiToken, ClientRole
from authz.smart import ScopeSet, parse_scopes

from .models import SubscriptionState


def context(state: SubscriptionState, *, request_id: str, origin: Origin) -> AccessContext | None:
    found = _who(state)
    if found is None:
        return None
    role, identity, credential = found
    if identity and not identities.identity_alive(identity):
        return None
    if state.subscriber_scopes == "-":
        scopes: ScopeSet | None = ScopeSet()
    else:
        scopes = parse_scopes(state.subscriber_scopes) if state.subscriber_scopes else None
    return AccessContext(
        role=role,
        identity=identity or None,
        request_id=request_id,
        scopes=scopes,
        method="subscription",
        credential=credential,
        origin=origin,
    )


def _who(state: SubscriptionState) -> tuple[str, str, str] | None:
    kind, ref = state.credential_kind, state.credential_ref
    if kind == "api-token":
        token = ApiToken.objects.filter(pk=ref if ref.isdigit() else 0).first()
        now = timezone.now()
        if token is None or token.revoked is not None or (token.expires is not None and token.expires <= now):
            return None
        return token.role, token.identity, f"api-token:{token.pk}"
    if kind == "oauth-user":
        user = get_user_model().objects.filter(pk=ref if ref.isdigit() else 0, is_active=True).first()
        resolved = identities.local_identity(user) if user is not None else None
        if resolved is None:
            return None
        return resolved.role, resolved.reference, f"user:{user.get_username()}"
    if kind == "oauth-client":
        service = ClientRole.objects.filter(application__client_id=ref).first()
        if service is None:
            return None
        return service.role, service.identity, f"oauth-client:{ref}"
    if kind == "jwt":
        return state.subscriber_role, state.subscriber_identity, f"jwt:{ref}"
    if kind == "system":
        return SYSTEM, "", "system"
    return None
