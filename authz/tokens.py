"""API tokens: minting, checking, revoking, and trading a one-time token for a durable one.

A token is `fpt_` + 43 characters of URL-safe randomness (256 bits). Only its SHA-256 is stored: a
fast hash is enough for a secret of that strength, and the lookup by hash is an index probe. The
secret is returned once, when minted. A one-time token authenticates exactly one request (the
QR-code onboarding pattern: the app exchanges it at `POST /fhir/$exchange-token` for a durable
token); the consuming UPDATE is conditional, so of two concurrent uses exactly one succeeds.

Every token expires. A lifetime asked for is between 1 second and settings.FHIR_TOKEN_MAX_LIFETIME;
0 ("never") or more than the cap is refused rather than clamped, so that the caller never holds a
token that lives shorter than it was told. Without a lifetime, a durable token (minted, or traded
for a one-time token) lives FHIR_API_TOKEN_TTL and a one-time token FHIR_ONE_TIME_TOKEN_TTL.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from resources.fhirdates import aware
from resources.models import Resource

from .errors import unauthorized
from .models import IDENTITY_TYPES, ROLE_PATTERN, ApiToken
from .rules import VERSION_SUBQUERY

log = logging.getLogger(__name__)

PREFIX = "fpt_"
_HINT_LENGTH = len(PREFIX) + 6


class TokenError(ValueError):
    """A request to mint or revoke a token that cannot be honoured (bad role, identity, lifetime)."""


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def looks_like_api_token(credential: str) -> bool:
    return credential.startswith(PREFIX)


def mint(
    *,
    role: str,
    identity: str = "",
    kind: str = ApiToken.DURABLE,
    ttl: int | None = None,
    label: str = "",
    created_by: str = "",
    exchanged_from: ApiToken | None = None,
) -> tuple[ApiToken, str]:
    """Create a token and return it with its secret (the only time the secret exists outside the caller)."""

    if not re.match(ROLE_PATTERN, role or ""):
        raise TokenError(f"'{role}' is not a valid role name (letters, digits, '_' or '-')")
    if kind not in (ApiToken.DURABLE, ApiToken.ONE_TIME):
        raise TokenError(f"Unknown token kind '{kind}' (durable or one-time)")
    if identity:
        _check_identity(identity)
    if ttl is None:
        ttl = settings.FHIR_ONE_TIME_TOKEN_TTL if kind == ApiToken.ONE_TIME else settings.FHIR_API_TOKEN_TTL
    limit = settings.FHIR_TOKEN_MAX_LIFETIME
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= limit:
        raise TokenError(
            f"A token lifetime is between 1 and {limit} seconds (FHIR_TOKEN_MAX_LIFETIME); every token "
            f"expires, so 0 or a longer lifetime is not accepted (got {ttl!r})"
        )
    if len(label) > 200:
        raise TokenError("A label has at most 200 characters")
    secret = PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        token_hash=hash_secret(secret),
        hint=secret[:_HINT_LENGTH],
        kind=kind,
        role=role,
        identity=identity,
        identity_type=identity.partition("/")[0],
        identity_id=identity.partition("/")[2],
        label=label,
        created_by=created_by[:200],
        expires=timezone.now() + timedelta(seconds=ttl),
        exchanged_from=exchanged_from,
    )
    return token, secret


def _check_identity(identity: str) -> None:
    from .identity import identity_alive

    resource_type, _, fhir_id = identity.partition("/")
    if resource_type not in IDENTITY_TYPES or not fhir_id:
        raise TokenError(f"'{identity}' is not an identity (Patient, Practitioner, RelatedPerson or Device)")
    if not identity_alive(identity):
        raise TokenError(f"{identity} does not exist")


def authenticate(secret: str) -> ApiToken:
    """The live token for a presented secret, or 401. Consumes a one-time token."""
    digest = hash_secret(secret)
    token = _lookup(digest)
    # The row was found by its hash; compare again in constant time so that the check itself does not
    # depend on how much of the secret was right.
    if token is None or not hmac.compare_digest(token.token_hash, digest):
        raise unauthorized("Unknown API token")
    now = timezone.now()
    if token.revoked is not None:
        raise unauthorized("API token has been revoked")
    if token.expires is not None and token.expires <= now:
        raise unauthorized("API token has expired")
    if token.identity and not token.identity_alive:
        raise unauthorized("The identity of this credential no longer exists")
    if token.kind == ApiToken.ONE_TIME:
        consume(token)
    return token


# Authentication runs on every request; a raw statement spares the ORM's query compilation.
# The rule set's version rides along, sparing the rule chain a round trip of its own (rules.py).
# So does the state of the identity: NULL when its resource is missing, else its `deleted` flag.
_LOOKUP_SQL = (
    f"SELECT t.id, t.token_hash, t.kind, t.role, t.identity, t.label, t.expires, t.revoked, "
    f"{VERSION_SUBQUERY}, (SELECT r.deleted FROM {Resource._meta.db_table} r "
    "WHERE r.resource_type = t.identity_type AND r.fhir_id = t.identity_id) "
    f"FROM {ApiToken._meta.db_table} t WHERE t.token_hash = %s"
)


def _lookup(digest: str) -> ApiToken | None:
    with connection.cursor() as cursor:
        cursor.execute(_LOOKUP_SQL, [digest])
        row = cursor.fetchone()
    if row is None:
        return None
    pk, token_hash, kind, role, identity, label, expires, revoked, rules_version, deleted = row
    token = ApiToken(
        pk=pk,
        token_hash=token_hash,
        kind=kind,
        role=role,
        identity=identity,
        label=label,
        expires=aware(expires) if expires else None,
        revoked=aware(revoked) if revoked else None,
    )
    token.rules_version = rules_version
    token.identity_alive = deleted is not None and not deleted
    return token


def consume(token: ApiToken) -> None:
    """Mark a one-time token used; the second of two concurrent uses finds it already used."""
    with transaction.atomic():
        updated = ApiToken.objects.filter(pk=token.pk, used__isnull=True, revoked__isnull=True).update(
            used=timezone.now()
        )
    if updated != 1:
        raise unauthorized("One-time token has already been used")


def exchange(one_time: ApiToken, *, ttl: int | None = None, label: str = "") -> tuple[ApiToken, str]:
    """A durable token for the identity and role of a (just consumed) one-time token; without a
    lifetime it lives FHIR_API_TOKEN_TTL, and never longer than FHIR_TOKEN_MAX_LIFETIME."""
    if one_time.kind != ApiToken.ONE_TIME:
        raise TokenError("Only a one-time token can be exchanged")
    return mint(
        role=one_time.role,
        identity=one_time.identity,
        ttl=ttl,
        label=label or one_time.label,
        created_by=f"exchange of token {one_time.pk}",
        exchanged_from=one_time,
    )


def revoke(token_or_id: str) -> ApiToken:
    """Revoke by secret or by id; revoking twice is harmless."""
    token_or_id = token_or_id.strip()
    if looks_like_api_token(token_or_id):
        token = ApiToken.objects.filter(token_hash=hash_secret(token_or_id)).first()
    elif token_or_id.isdigit():
        token = ApiToken.objects.filter(pk=int(token_or_id)).first()
    else:
        raise TokenError("Give a token (fpt_...) or a token id (a number)")
    if token is None:
        raise TokenError("No such token")
    if token.revoked is None:
        ApiToken.objects.filter(pk=token.pk, revoked__isnull=True).update(revoked=timezone.now())
        token.refresh_from_db()
    return token
