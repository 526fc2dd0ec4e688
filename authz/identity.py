"""From an authenticated subject to a FHIR identity and a role.

The order, first answer wins: an explicit IdentityLink; the issuer's FHIR-user claim (SMART's
`fhirUser`); an identifier match (the issuer's identifier system + the subject) on Patient,
Practitioner, RelatedPerson and Device; a match of a verified email (`email_verified` true) on
`telecom`; auto-create when the issuer
allows it. Two candidates at any step are refused, never guessed. An identity whose resource is
missing or deleted authenticates nobody.

The role is the link's role, else a mapped value of the roles claim, else the identity's type,
else the issuer's default role.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import IntegrityError, connection, transaction

from resources.models import Resource, TokenIndex

from .context import AccessContext
from .errors import unauthorized
from .issuers import IssuerConfig
from .models import IDENTITY_TYPES, IdentityLink

log = logging.getLogger(__name__)

_ALIVE_SQL = f"SELECT deleted FROM {Resource._meta.db_table} WHERE resource_type = %s AND fhir_id = %s"


@dataclass(frozen=True)
class Resolved:
    reference: str  # "Patient/123", or "" for a role without an identity
    role: str


def identity_alive(reference: str) -> bool:
    """True when the identity resource exists and is not deleted."""
    resource_type, _, fhir_id = reference.partition("/")
    if resource_type not in IDENTITY_TYPES or not fhir_id:
        return False
    with connection.cursor() as cursor:
        cursor.execute(_ALIVE_SQL, [resource_type, fhir_id])
        row = cursor.fetchone()
    return row is not None and not row[0]


def identity_resource(ctx: AccessContext) -> dict | None:
    """The caller's identity resource as JSON (once per request), or None without an identity."""
    if not ctx.identity:
        return None

    def load() -> dict | None:
        from resources import fhirjson

        resource_type, _, fhir_id = ctx.identity.partition("/")
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT body FROM {Resource._meta.db_table} WHERE resource_type = %s AND fhir_id = %s "
                "AND NOT deleted",
                [resource_type, fhir_id],
            )
            row = cursor.fetchone()
        return fhirjson.loads(row[0]) if row else None

    return ctx.memo(("identity-resource",), load)


def require_alive(reference: str) -> None:
    if reference and not identity_alive(reference):
        raise unauthorized("The identity of this credential no longer exists")


def local_identity(user) -> Resolved | None:
    """The identity of one of this server's Django users: its link, else one resource with its email."""
    link = IdentityLink.objects.filter(issuer=IdentityLink.LOCAL, subject=str(user.pk)).first()
    if link is not None:
        return Resolved(link.reference, link.role or _type_of(link.reference))
    if user.email:
        found = _single(_by_email(user.email), "email")
        if found:
            return Resolved(found, _type_of(found))
    return None


def resolve_external(config: IssuerConfig, claims: dict) -> Resolved:
    """The identity and role for the verified claims of an external issuer's token (or 401)."""
    subject = claims[config.subject_claim]
    mapped_role = _mapped_role(config, claims)
    link = IdentityLink.objects.filter(issuer=config.issuer, subject=subject).first()
    if link is not None:
        require_alive(link.reference)
        return Resolved(link.reference, link.role or mapped_role or _type_of(link.reference))
    reference = _find(config, claims, subject)
    if reference:
        require_alive(reference)
    elif config.auto_create:
        reference = _auto_create(config, claims, subject)
    role = mapped_role or _type_of(reference) or config.default_role
    if not role:
        raise unauthorized("The token's subject is not mapped to a FHIR identity or a role")
    return Resolved(reference, role)


def _find(config: IssuerConfig, claims: dict, subject: str) -> str:
    if config.fhir_user_claim and claims.get(config.fhir_user_claim):
        reference = _reference_from_claim(claims[config.fhir_user_claim])
        if not reference:
            raise unauthorized(f"The '{config.fhir_user_claim}' claim does not name a FHIR identity")
        return reference
    if config.identifier_system:
        found = _single(_by_identifier(config.identifier_system, subject), "identifier")
        if found:
            return found
    email = _verified_email(config, claims)
    if config.match_email and email:
        return _single(_by_email(email), "email")
    return ""


def _verified_email(config: IssuerConfig, claims: dict) -> str:
    """The email claim when the issuer says it verified it, else "". OpenID Connect Core 5.1:
    `email_verified` is a boolean; some providers send the string "true". Missing, false, "false"
    or anything else is unverified: whoever controls an account at the issuer could otherwise type
    a patient's address and be taken for that patient."""
    email = claims.get(config.email_claim) if config.email_claim else None
    if not isinstance(email, str) or not email:
        return ""
    verified = claims.get("email_verified")
    return email if verified is True or verified == "true" else ""


def _reference_from_claim(value: object) -> str:
    """`Patient/123` or an absolute URL ending in it."""
    if not isinstance(value, str):
        return ""
    parts = value.rstrip("/").split("/")
    if len(parts) < 2 or parts[-2] not in IDENTITY_TYPES or not parts[-1]:
        return ""
    return f"{parts[-2]}/{parts[-1]}"


def _single(candidates: list[str], how: str) -> str:
    unique = sorted(set(candidates))
    if len(unique) > 1:
        log.warning("Refused an ambiguous %s match (%d identities)", how, len(unique))
        raise unauthorized(f"The {how} of this subject matches more than one FHIR identity")
    return unique[0] if unique else ""


def _by_identifier(system: str, value: str) -> list[str]:
    return _identities("identifier", system=system, code=value)


def _by_email(email: str) -> list[str]:
    return _identities("email", code__in={email, email.lower()})


def _identities(param: str, **token) -> list[str]:
    """The live identity resources ('Type/id') whose `param` token matches."""
    rows = (
        TokenIndex.objects.system("identity by token")
        .filter(resource_type__in=IDENTITY_TYPES, param=param, resource__deleted=False, **token)
        .values_list("resource_type", "resource__fhir_id")
    )
    return [f"{t}/{i}" for t, i in rows]


def _mapped_role(config: IssuerConfig, claims: dict) -> str:
    """The first value of the roles claim that the issuer's role map knows (unmapped values are ignored,
    so an identity provider's group named 'Admin' does not become this platform's Admin by accident)."""
    if not config.roles_claim or not config.role_map:
        return ""
    value: object = claims
    for part in config.roles_claim.split("."):  # Keycloak nests them: realm_access.roles
        value = value.get(part) if isinstance(value, dict) else None
    values = value.split() if isinstance(value, str) else value if isinstance(value, list) else []
    role_map = dict(config.role_map)
    for item in values:
        if isinstance(item, str) and item in role_map:
            return role_map[item]
    return ""


def _type_of(reference: str) -> str:
    return reference.split("/", 1)[0] if reference else ""


def _auto_create(config: IssuerConfig, claims: dict, subject: str) -> str:
    """Create the identity resource and link it, once per subject even under concurrent first logins."""
    from resources.services import resource_create, serialise_conditional

    body: dict = {
        "resourceType": config.auto_create,
        "identifier": [{"system": config.identifier_system or config.issuer, "value": subject}],
    }
    if config.auto_create != "Device":
        name = {k: v for k, v in (("family", claims.get("family_name")),) if isinstance(v, str) and v}
        given = claims.get("given_name")
        if isinstance(given, str) and given:
            name["given"] = [given]
        if not name and isinstance(claims.get("name"), str) and claims["name"]:
            name["text"] = claims["name"]
        if name:
            body["name"] = [name]
        # Only a verified address goes on the new identity: a later email match must not find it
        # through an address its owner never proved.
        email = _verified_email(config, claims)
        if email:
            body["telecom"] = [{"system": "email", "value": email}]
    ctx = AccessContext.system("auto-create identity")
    with transaction.atomic():
        serialise_conditional("IdentityLink", f"{config.issuer}|{subject}")
        link = IdentityLink.objects.filter(issuer=config.issuer, subject=subject).first()
        if link is not None:
            return link.reference
        result = resource_create(ctx, resource_type=config.auto_create, body=body)
        reference = f"{config.auto_create}/{result.stored.fhir_id}"
        try:
            with transaction.atomic():
                IdentityLink.objects.create(issuer=config.issuer, subject=subject, reference=reference)
        except IntegrityError:  # pragma: no cover - the advisory lock makes this a lost race on SQLite only
            raise unauthorized("Concurrent first sign-in; try again") from None
    log.info("Created %s for a new subject of %s", reference, config.issuer)
    return reference
