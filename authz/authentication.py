"""Bearer credential -> AccessContext (RFC 6750).

Three kinds of bearer token, told apart by their shape: API tokens (`fpt_...`, tokens.py), JWTs
from trusted external issuers (three dot-separated parts, jwt.py), and opaque access tokens issued
by this server's OAuth provider (django-oauth-toolkit). No Authorization header means the `Public`
role; a header that is present but wrong is a 401, never a silent fall back to `Public`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import logging
import uuid

from django.http import HttpRequest

from . import identity, jwt, tokens
from .context import AccessContext, Origin
from .errors import unauthorized
from .models import ClientRole, IdentityLink
from .smart import ScopeSet, parse_scopes

log = logging.getLogger(__name__)

_MAX_CREDENTIAL = 8192


def request_id(request: HttpRequest) -> str:
    """The caller's X-Request-Id when it is sane, else a new one."""
    return clean_request_id(request.headers.get("X-Request-Id", ""))


def clean_request_id(given: str | None) -> str:
    if given and 0 < len(given) <= 200 and given.isprintable():
        return given
    return uuid.uuid4().hex


def origin_of(request: HttpRequest, transport: str = "rest") -> Origin:
    return Origin(
        transport=transport,
        method=request.method or "",
        path=request.path,
        query=request.META.get("QUERY_STRING", ""),
        client_ip=request.META.get("REMOTE_ADDR") or None,
        user_agent=request.headers.get("User-Agent", ""),
    )


def authenticate(request: HttpRequest) -> AccessContext:
    """The HTTP form of `authenticate_bearer`: the Authorization header and the request's origin."""
    return authenticate_bearer(
        request.headers.get("Authorization"), request_id=request_id(request), origin=origin_of(request)
    )


def authenticate_bearer(
    header: str | None, *, request_id: str | None = None, origin: Origin | None = None
) -> AccessContext:
    """The caller behind an `Authorization` header value (None: no header, the Public role), for any
    transport: REST, GraphQL, a WebSocket's bind message, an agent. A present but wrong credential is
    a 401 FhirError, never a silent fall back to Public."""
    rid = clean_request_id(request_id)
    origin = origin or Origin()
    if header is None:
        return AccessContext.public(rid, origin)
    scheme, _, credential = header.strip().partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential or " " in credential or len(credential) > _MAX_CREDENTIAL:
        _refused(origin, "malformed Authorization header", "")
        raise unauthorized("The Authorization header must be 'Bearer <token>'", error="invalid_request")
    try:
        if tokens.looks_like_api_token(credential):
            ctx = _api_token(credential, rid)
        elif credential.count(".") == 2:
            ctx = _external_jwt(credential, rid)
        else:
            ctx = _oauth_token(credential, rid)
    except Exception as exc:
        _refused(
            origin,
            getattr(exc, "issues", None) and exc.issues[0].diagnostics or type(exc).__name__,
            credential,
        )
        raise
    return dataclasses.replace(ctx, origin=origin, cache=ctx.cache)


def _refused(origin: Origin, reason: str, credential: str) -> None:
    # Only a short digest of the credential is logged, enough to correlate attempts, useless to replay.
    digest = hashlib.sha256(credential.encode()).hexdigest()[:12] if credential else "-"
    log.warning(
        "Authentication refused (%s) for %s %s, credential sha256:%s",
        reason,
        origin.method,
        origin.path,
        digest,
    )


def _api_token(secret: str, rid: str) -> AccessContext:
    token = tokens.authenticate(secret)
    ctx = AccessContext(
        role=token.role,
        identity=token.identity or None,
        request_id=rid,
        method="api-token",
        credential=f"api-token:{token.pk}" + (f" ({token.label})" if token.label else ""),
    )
    ctx.cache[("rules-version",)] = token.rules_version
    return ctx


def _external_jwt(credential: str, rid: str) -> AccessContext:
    config, claims = jwt.verify(credential)
    resolved = identity.resolve_external(config, claims)
    scope = claims.get(config.scope_claim) if config.scope_claim else None
    if isinstance(scope, list):
        scope = " ".join(s for s in scope if isinstance(s, str))
    on_behalf = claims.get("act", {}).get("sub", "") if isinstance(claims.get("act"), dict) else ""
    return AccessContext(
        role=resolved.role,
        identity=resolved.reference or None,
        request_id=rid,
        scopes=parse_scopes(scope) if isinstance(scope, str) else None,
        method="jwt",
        credential=f"jwt:{claims.get('jti', '')}"[:100],
        issuer=config.issuer,
        subject=str(claims[config.subject_claim]),
        client_id=str(claims.get("azp") or claims.get("client_id") or "")[:200],
        on_behalf_of=str(on_behalf)[:200],
    )


def _oauth_token(credential: str, rid: str) -> AccessContext:
    from oauth2_provider.models import get_access_token_model

    checksum = hashlib.sha256(credential.encode()).hexdigest()
    token = (
        get_access_token_model()
        .objects.select_related("application", "user")
        .filter(token_checksum=checksum)
        .first()
    )
    if token is None or not hmac.compare_digest(token.token_checksum, checksum):
        raise unauthorized("Unknown or revoked access token")
    if token.is_expired():
        raise unauthorized("Access token has expired")
    # Tokens this server issues always carry scopes; without SMART resource scopes they grant nothing.
    scopes = parse_scopes(token.scope) or ScopeSet()
    client_id = token.application.client_id if token.application else ""
    # What every OAuth caller's context carries, whoever the token acts for.
    common = {
        "request_id": rid,
        "scopes": scopes,
        "method": "oauth",
        "credential": f"oauth:{token.pk}",
        "client_id": client_id,
    }
    if token.user is not None:
        if not token.user.is_active:
            raise unauthorized("The user of this token is inactive")
        resolved = identity.local_identity(token.user)
        if resolved is None:
            raise unauthorized("The user is not linked to a FHIR identity or a role")
        identity.require_alive(resolved.reference)
        return AccessContext(
            role=resolved.role,
            identity=resolved.reference or None,
            user=token.user.get_username(),
            issuer=IdentityLink.LOCAL,
            subject=str(token.user.pk),
            **common,
        )
    service = ClientRole.objects.filter(application=token.application).first() if token.application else None
    if service is None:
        raise unauthorized("This OAuth client has no role configured")
    identity.require_alive(service.identity)
    return AccessContext(role=service.role, identity=service.identity or None, **common)
