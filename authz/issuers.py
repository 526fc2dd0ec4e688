"""Which external OpenID Connect issuers are trusted, and how their tokens are read.

This module owns the list of trusted issuers: the entries of `settings.FHIR_TRUSTED_ISSUERS` merged
with the enabled `TrustedIssuer` rows of the database, as immutable `IssuerConfig` values. It does
not fetch keys nor verify tokens (that is authz/jwt.py).

An issuer is the exact `iss` string of its tokens (RFC 7519 section 4.1.1, OpenID Connect Core 1.0
section 2: a case-sensitive https URL compared as a string); `audience` is the `aud` value the
tokens must carry (RFC 7519 section 4.1.3). The keys are found at `jwks_url` (RFC 7517 section 5)
or through the `jwks_uri` of the discovery document (OpenID Connect Discovery 1.0 section 3).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.db.models.signals import post_delete, post_save

logger = logging.getLogger(__name__)

# Long enough that a burst of requests reads the database once, short enough that an issuer
# disabled in the console in another process stops being trusted within seconds.
CACHE_SECONDS = 10.0


def _empty_role_map() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True)
class IssuerConfig:
    """A trusted issuer and the names of the claims its tokens use."""

    issuer: str
    audience: str
    jwks_url: str = ""
    discovery_url: str = ""
    subject_claim: str = "sub"
    email_claim: str = "email"
    roles_claim: str = ""
    fhir_user_claim: str = "fhirUser"
    scope_claim: str = "scope"
    identifier_system: str = ""
    match_email: bool = True
    # Read-only so that a frozen config cannot be changed through its mapping; left out of the hash
    # so that configs can still be set members and dict keys.
    role_map: Mapping[str, str] = field(default_factory=_empty_role_map, hash=False)
    default_role: str = ""
    auto_create: str = ""


_FIELDS = {f.name: f for f in fields(IssuerConfig)}
_REQUIRED = ("issuer", "audience")
# `enabled` is a field of the TrustedIssuer model, so a setting may carry it too.
_SETTING_ONLY = {"enabled"}

_lock = threading.Lock()
_cached: tuple[float, dict[str, IssuerConfig]] | None = None


def trusted_issuers() -> dict[str, IssuerConfig]:
    """The trusted issuers by their exact `iss`; a database row wins over a setting of the same issuer."""
    global _cached
    now = time.monotonic()
    with _lock:
        if _cached is not None and now - _cached[0] < CACHE_SECONDS:
            return dict(_cached[1])
    issuers = {config.issuer: config for config in _from_settings()}
    issuers.update((config.issuer, config) for config in _from_database())
    with _lock:
        _cached = (now, issuers)
    return dict(issuers)


def clear_cache(**_: Any) -> None:
    """Forget the cached list (tests; a console edit in this process; a settings override)."""
    global _cached
    with _lock:
        _cached = None


def _from_settings() -> list[IssuerConfig]:
    entries = getattr(settings, "FHIR_TRUSTED_ISSUERS", None) or []
    if not isinstance(entries, list | tuple):
        raise ImproperlyConfigured("FHIR_TRUSTED_ISSUERS must be a list of objects")
    configs = []
    for index, entry in enumerate(entries):
        config = _config_from_setting(index, entry)
        if config is not None:
            configs.append(config)
    return configs


def _config_from_setting(index: int, entry: object) -> IssuerConfig | None:
    name = _entry_name(index, entry)
    if not isinstance(entry, dict):
        raise ImproperlyConfigured(f"{name} must be an object")
    unknown = sorted(set(entry) - set(_FIELDS) - _SETTING_ONLY)
    if unknown:
        raise ImproperlyConfigured(f"{name} has unknown keys: {', '.join(map(str, unknown))}")
    for key in _REQUIRED:
        if not isinstance(entry.get(key), str) or not entry[key]:
            raise ImproperlyConfigured(f"{name} needs a non-empty '{key}'")
    if not entry.get("jwks_url") and not entry.get("discovery_url"):
        raise ImproperlyConfigured(f"{name} needs a 'jwks_url' or a 'discovery_url'")
    _check_types(name, entry)
    if not entry.get("enabled", True):
        return None
    values = {key: value for key, value in entry.items() if key in _FIELDS}
    values["role_map"] = MappingProxyType(dict(entry.get("role_map") or {}))
    return IssuerConfig(**values)


def _entry_name(index: int, entry: object) -> str:
    issuer = entry.get("issuer") if isinstance(entry, dict) else None
    return f"FHIR_TRUSTED_ISSUERS[{index}]" + (f" ({issuer})" if isinstance(issuer, str) and issuer else "")


def _check_types(name: str, entry: dict) -> None:
    # A wrong type would otherwise surface later as a confusing 401 or a crash in the request path.
    for key, value in entry.items():
        if key in ("match_email", "enabled"):
            if not isinstance(value, bool):
                raise ImproperlyConfigured(f"{name}: '{key}' must be true or false")
        elif key == "role_map":
            if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()
            ):
                raise ImproperlyConfigured(f"{name}: 'role_map' must map strings to strings")
        elif not isinstance(value, str):
            raise ImproperlyConfigured(f"{name}: '{key}' must be a string")


def _from_database() -> list[IssuerConfig]:
    from .models import TrustedIssuer  # settings are read before the app registry is ready

    configs = []
    for row in TrustedIssuer.objects.filter(enabled=True).order_by("pk"):
        config = _config_from_row(row)
        if config is not None:
            configs.append(config)
    return configs


def _config_from_row(row: Any) -> IssuerConfig | None:
    # The console validates rows, but a row written by a script bypasses clean(); one bad row must
    # not take down every other issuer, so it is skipped loudly instead of raising.
    if not row.issuer or not row.audience or not (row.jwks_url or row.discovery_url):
        logger.warning(
            "Trusted issuer %r is incomplete (issuer, audience and a key URL) and is ignored", row.pk
        )
        return None
    role_map = row.role_map if isinstance(row.role_map, dict) else {}
    if role_map is not row.role_map:
        logger.warning("The role map of trusted issuer %s is not an object and is ignored", row.issuer)
    values = {name: getattr(row, name) for name in _FIELDS if name != "role_map"}
    values["role_map"] = MappingProxyType({str(k): str(v) for k, v in role_map.items()})
    return IssuerConfig(**values)


def _forget_on_setting(*, setting: str, **kwargs: Any) -> None:
    if setting == "FHIR_TRUSTED_ISSUERS":
        clear_cache()


# A console edit takes effect at once in the process that made it; others follow within CACHE_SECONDS.
post_save.connect(clear_cache, sender="authz.TrustedIssuer", dispatch_uid="authz.issuers.saved")
post_delete.connect(clear_cache, sender="authz.TrustedIssuer", dispatch_uid="authz.issuers.deleted")
setting_changed.connect(_forget_on_setting, dispatch_uid="authz.issuers.setting")
