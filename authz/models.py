"""Who may call: API tokens, links from external subjects to FHIR identities, trusted OIDC issuers and
the roles of OAuth applications. The rules that decide what a caller may do live in rules.py."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from oauth2_provider.settings import oauth2_settings

IDENTITY_TYPES = ("Patient", "Practitioner", "RelatedPerson", "Device")

# A role names a set of rules; kept to a plain word so it reads the same in YAML, logs and headers.
ROLE_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"
role_validator = RegexValidator(ROLE_PATTERN, "A role is a word of letters, digits, '_' or '-'.")
reference_validator = RegexValidator(
    r"^(Patient|Practitioner|RelatedPerson|Device)/[A-Za-z0-9\-.]{1,64}$",
    "An identity is a reference such as Patient/123 (Patient, Practitioner, RelatedPerson or Device).",
)


class ApiToken(models.Model):
    """A bearer secret minted for an identity. Only its SHA-256 is stored; the secret is shown once."""

    DURABLE = "durable"
    ONE_TIME = "one-time"
    KINDS = [(DURABLE, "durable"), (ONE_TIME, "one-time")]

    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    # The first characters of the secret, enough to recognise a token in the console, useless to guess it.
    hint = models.CharField(max_length=16, editable=False)
    kind = models.CharField(max_length=10, choices=KINDS, default=DURABLE)
    role = models.CharField(max_length=64, validators=[role_validator])
    identity = models.CharField(max_length=100, blank=True, default="", validators=[reference_validator])
    # `identity` split, so that authentication checks the identity still exists in the same statement
    # that finds the token (tokens.py).
    identity_type = models.CharField(max_length=32, blank=True, default="", editable=False)
    identity_id = models.CharField(max_length=64, blank=True, default="", editable=False)
    label = models.CharField(max_length=200, blank=True, default="")
    created = models.DateTimeField(auto_now_add=True)
    created_by = models.CharField(max_length=200, blank=True, default="")
    expires = models.DateTimeField(null=True, blank=True)
    revoked = models.DateTimeField(null=True, blank=True)
    used = models.DateTimeField(null=True, blank=True)  # one-time tokens: when it was consumed
    # A durable token obtained by exchanging a one-time token remembers where it came from.
    exchanged_from = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL)

    class Meta:
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.hint}… {self.role} {self.identity or ''} {self.label}".strip()


class IdentityLink(models.Model):
    """An explicit mapping from an authenticated subject to a FHIR identity and/or a role.

    `issuer` is an external issuer URL, or "local" for this server's own Django users (subject = the
    user's primary key). A link without a reference gives a role alone (an operator, a researcher).
    """

    LOCAL = "local"

    issuer = models.CharField(max_length=500)
    subject = models.CharField(max_length=500)
    reference = models.CharField(max_length=100, blank=True, default="", validators=[reference_validator])
    role = models.CharField(max_length=64, blank=True, default="", validators=[role_validator])
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["issuer", "subject"], name="identity_link_subject")]

    def __str__(self) -> str:
        return f"{self.issuer} {self.subject} -> {self.reference or self.role}"

    def clean(self) -> None:
        if not self.reference and not self.role:
            raise ValidationError("A link names a FHIR identity, a role, or both.")


class TrustedIssuer(models.Model):
    """An external OpenID Connect provider whose signed JWTs are accepted as bearer tokens."""

    issuer = models.CharField(max_length=500, unique=True, help_text="Must equal the token's `iss` exactly.")
    jwks_url = models.URLField(max_length=500, blank=True, default="")
    discovery_url = models.URLField(
        max_length=500, blank=True, default="", help_text="Used to find the JWKS when no JWKS URL is given."
    )
    audience = models.CharField(max_length=500, help_text="The `aud` the tokens must carry.")
    subject_claim = models.CharField(max_length=100, default="sub")
    email_claim = models.CharField(max_length=100, blank=True, default="email")
    roles_claim = models.CharField(max_length=100, blank=True, default="")
    fhir_user_claim = models.CharField(max_length=100, blank=True, default="fhirUser")
    scope_claim = models.CharField(max_length=100, blank=True, default="scope")
    identifier_system = models.CharField(
        max_length=500, blank=True, default="", help_text="Match identities by identifier system|subject."
    )
    match_email = models.BooleanField(default=True)
    # Maps a value of the roles claim to a platform role, e.g. {"clinician": "Practitioner"}.
    role_map = models.JSONField(default=dict, blank=True)
    default_role = models.CharField(max_length=64, blank=True, default="", validators=[role_validator])
    auto_create = models.CharField(
        max_length=20,
        blank=True,
        default="",
        choices=[("", "off")] + [(t, t) for t in IDENTITY_TYPES],
        help_text="Create an identity of this type when no other way finds one.",
    )
    enabled = models.BooleanField(default=True)

    def __str__(self) -> str:
        return self.issuer

    def clean(self) -> None:
        if not self.jwks_url and not self.discovery_url:
            raise ValidationError("Give a JWKS URL or a discovery URL.")


class ClientRole(models.Model):
    """The role (and optional identity) of an OAuth application acting on its own behalf
    (client credentials: service accounts, agents)."""

    application = models.OneToOneField(
        oauth2_settings.APPLICATION_MODEL, on_delete=models.CASCADE, related_name="fhir_role"
    )
    role = models.CharField(max_length=64, validators=[role_validator])
    identity = models.CharField(max_length=100, blank=True, default="", validators=[reference_validator])

    def __str__(self) -> str:
        return f"{self.application} as {self.role}"


class Rule(models.Model):
    """One rule of the ordered rule chain (rules.py). Loaded and dumped as YAML (ruleset.py)."""

    position = models.PositiveIntegerField()
    name = models.CharField(max_length=100, unique=True)
    role = models.CharField(max_length=64, validators=[role_validator])
    # Lists of resource types and operations; ["*"] for all.
    resources = models.JSONField(default=list)
    operations = models.JSONField(default=list)
    # "Allowed", or {"LegitimateInterest": {"inherit": true}}.
    validator = models.JSONField(default=dict)
    identity_filter = models.TextField(blank=True, default="")
    property_filters = models.JSONField(default=list, blank=True)
    blocked_search_params = models.JSONField(default=list, blank=True)
    blocked_includes = models.JSONField(default=list, blank=True)
    # `may-widen-access`: writes this rule authorises may widen the writer's own access.
    may_widen_access = models.BooleanField(default=False)

    class Meta:
        ordering = ["position"]

    def __str__(self) -> str:
        return f"{self.position}. {self.name}"


class RuleSetVersion(models.Model):
    """One row whose counter moves whenever the rules change, so every process reloads them."""

    version = models.PositiveBigIntegerField(default=1)
    changed = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"rule set version {self.version}"
