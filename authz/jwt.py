"""Verification of JWTs signed by trusted external OpenID Connect issuers.

This module owns the checks that turn a bearer string into verified claims, and the in-process
cache of the issuers' signing keys. It does not map claims to roles or FHIR identities (that is the
authentication layer) nor decide which issuers are trusted (authz/issuers.py).

- RFC 7519 (JWT) section 7.2: the token is a JWS in compact form; section 4.1 gives the registered
  claims checked here: `iss` (4.1.1, compared exactly), `sub` (4.1.2), `aud` (4.1.3, may be a list),
  `exp` (4.1.4, required), `nbf` (4.1.5) and `iat` (4.1.6), with a small clock leeway.
- RFC 7517 (JWK) section 5: the issuer publishes a JWK Set; section 4.5 `kid` selects the key,
  4.2 `use` and 4.3 `key_ops` exclude keys not meant for verifying signatures, 4.4 `alg` pins a key
  to one algorithm.
- RFC 8725 (JWT best practices) sections 2.1 and 3.1: the algorithm is taken from an allow-list of
  asymmetric algorithms and must fit the key, so `none` and HMAC-with-the-public-key are refused.
- OpenID Connect Core 1.0 section 10.1.1: a signing key is found by `kid`, and on rotation the
  verifier refetches the JWK Set when it meets an unknown `kid`. OpenID Connect Discovery 1.0
  sections 3 and 4.3: the `jwks_uri` of the discovery document, whose `issuer` must be exact.

`verify()` raises only `authz.errors.unauthorized` (a 401 FhirError) for a refused token; its
reasons are short and never repeat the token.
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import threading
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import jwt
from django.conf import settings

from .errors import unauthorized
from .issuers import IssuerConfig, trusted_issuers

logger = logging.getLogger(__name__)

# Key type and, for curves, the curves each accepted algorithm may use (RFC 7518 section 3.1,
# RFC 8037 section 3.1). Anything else, notably `none` and HS*, is refused.
ALGORITHMS: dict[str, tuple[str, frozenset[str] | None]] = {
    **{alg: ("RSA", None) for alg in ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")},
    "ES256": ("EC", frozenset({"P-256"})),
    "ES384": ("EC", frozenset({"P-384"})),
    "ES512": ("EC", frozenset({"P-521"})),
    "EdDSA": ("OKP", frozenset({"Ed25519", "Ed448"})),
}
# Only public members are kept: a JWK Set that leaks a private key must not make us hold it.
_PUBLIC_MEMBERS = ("kty", "kid", "alg", "use", "key_ops", "crv", "n", "e", "x", "y")
MIN_RSA_BITS = 2048

KEYS_SECONDS = 3600.0  # how long a fetched key set is used before it is fetched again
REFETCH_SECONDS = 30.0  # fewest seconds between two fetches for one issuer, whatever the tokens say
FETCH_TIMEOUT = 5.0
MAX_DOCUMENT_BYTES = 1024 * 1024
_SCHEMES = ("https", "http")

MALFORMED = "Malformed token"
UNAVAILABLE = "Signing keys of the issuer are unavailable"
UNKNOWN_KEY = "Unknown signing key"

# Monotonic, so a wall-clock step cannot expire or pin the key cache; tests replace it.
_clock = time.monotonic


def verify(token: str) -> tuple[IssuerConfig, dict[str, Any]]:
    """The trusted issuer of `token` and its verified claims, or a 401 FhirError saying why not."""
    header, unverified = _read_unverified(token)
    config = _issuer_of(unverified)
    algorithm = _algorithm_of(header)
    key = _signing_key(config, header.get("kid"), algorithm)
    claims = _decode(token, key, algorithm, config)
    _check_issued_at(claims)
    _check_subject(claims, config)
    return config, claims


def clear_cache() -> None:
    """Forget every fetched key set and discovery document (tests)."""
    with _entries_lock:
        _entries.clear()


# --- Reading the token ---


def _read_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    # The claims are read unverified only to learn `iss`, hence which keys to verify with.
    if not isinstance(token, str) or token.count(".") != 2:
        raise unauthorized(MALFORMED)
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
    except Exception:  # mostly jwt.DecodeError; whatever a hostile string provokes is a 401, not a 500
        raise unauthorized(MALFORMED) from None
    return header, claims


def _issuer_of(claims: Mapping[str, Any]) -> IssuerConfig:
    issuer = claims.get("iss")
    config = trusted_issuers().get(issuer) if isinstance(issuer, str) else None
    if config is None:
        raise unauthorized("Token issuer is not trusted")
    return config


def _algorithm_of(header: Mapping[str, Any]) -> str:
    algorithm = header.get("alg")
    if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
        raise unauthorized("Token algorithm is not allowed")
    return algorithm


def _decode(token: str, key: jwt.PyJWK, algorithm: str, config: IssuerConfig) -> dict[str, Any]:
    try:
        return jwt.decode(
            token,
            key=key,
            algorithms=[algorithm],
            audience=config.audience,
            issuer=config.issuer,
            leeway=_leeway(),
            # The subject may live in another claim (config.subject_claim); it is checked below.
            options={"require": ["exp", "iss", "aud"], "verify_sub": False},
        )
    except jwt.PyJWTError as exc:
        raise unauthorized(_reason(exc)) from None
    except Exception as exc:  # a crypto backend surprise must still be a refusal, never a 500
        logger.warning("Unexpected %s while verifying a token of %s", type(exc).__name__, config.issuer)
        raise unauthorized("Token is invalid") from None


def _reason(exc: jwt.PyJWTError) -> str:
    # Subclasses before their bases: ExpiredSignatureError is an InvalidTokenError, and so on.
    if isinstance(exc, jwt.ExpiredSignatureError):
        return "Token has expired"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "Token is not valid yet"
    if isinstance(exc, jwt.InvalidAudienceError):
        return "Token audience does not match"
    if isinstance(exc, jwt.InvalidIssuerError):
        return "Token issuer does not match"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"Token has no '{exc.claim}' claim"  # one of our own fixed names, never token data
    if isinstance(exc, jwt.InvalidSignatureError):
        return "Token signature is invalid"
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return "Token algorithm is not allowed"
    if isinstance(exc, jwt.InvalidIssuedAtError):
        return "Token issue time is invalid"
    if isinstance(exc, jwt.DecodeError):
        return MALFORMED
    return "Token is invalid"


def _check_issued_at(claims: Mapping[str, Any]) -> None:
    # PyJWT refuses an `iat` in the future only in recent versions; this keeps the rule whatever
    # version is installed. PyJWT has already checked that `iat` is a number.
    issued = claims.get("iat")
    if isinstance(issued, int | float) and issued > time.time() + _leeway():
        raise unauthorized("Token is not valid yet")


def _check_subject(claims: Mapping[str, Any], config: IssuerConfig) -> None:
    subject = claims.get(config.subject_claim)
    if not isinstance(subject, str) or not subject.strip():
        raise unauthorized("Token has no subject")


def _leeway() -> int:
    return int(getattr(settings, "FHIR_JWT_LEEWAY", 60))


# --- Signing keys ---


@dataclass(frozen=True)
class _Key:
    """One usable entry of a JWK Set."""

    kid: str | None
    kty: str
    crv: str | None
    alg: str | None  # the JWK's own `alg`: when present the key serves that algorithm only
    jwk: Mapping[str, Any]

    def fits(self, algorithm: str) -> bool:
        kty, curves = ALGORITHMS[algorithm]
        if self.kty != kty or (curves is not None and self.crv not in curves):
            return False
        return self.alg is None or self.alg == algorithm


@dataclass
class _KeySet:
    keys: tuple[_Key, ...]
    by_kid: dict[str, list[_Key]]
    # PyJWK binds one algorithm, so verifiers are kept per (kid, algorithm); built once, then the hot
    # path is one dict lookup. Only known kids and allowed algorithms get in, so it stays small.
    verifiers: dict[tuple[str | None, str], jwt.PyJWK] = field(default_factory=dict)

    def find(self, kid: str | None, algorithm: str) -> jwt.PyJWK | None:
        """The verifier for this kid and algorithm; None when the kid is unknown."""
        verifier = self.verifiers.get((kid, algorithm))
        if verifier is not None:
            return verifier
        candidates = self._candidates(kid)
        if not candidates:
            return None
        fitting = [key for key in candidates if key.fits(algorithm)]
        if not fitting:
            raise unauthorized("Token algorithm does not match the signing key")
        verifier = _verifier(fitting[0], algorithm)
        self.verifiers[(kid, algorithm)] = verifier
        return verifier

    def _candidates(self, kid: str | None) -> list[_Key]:
        if kid is not None:
            return self.by_kid.get(kid, [])
        # Without a kid only an unambiguous key set will do (OIDC Core section 10.1).
        if len(self.keys) > 1:
            raise unauthorized("Token names no signing key and the issuer has several")
        return list(self.keys)


@dataclass
class _IssuerKeys:
    """The cached keys of one issuer. `lock` serialises fetches only; readers never wait on it
    unless they need a fetch themselves."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    keyset: _KeySet | None = None
    fetched_at: float = -math.inf
    attempted_at: float = -math.inf
    jwks_uri: str = ""
    jwks_uri_at: float = -math.inf


_entries_lock = threading.Lock()
# Keyed by the URLs too, so that editing an issuer's key location is not masked by the old keys.
_entries: dict[tuple[str, str, str], _IssuerKeys] = {}


def _signing_key(config: IssuerConfig, kid: str | None, algorithm: str) -> jwt.PyJWK:
    entry = _entry_for(config)
    keyset = entry.keyset
    if keyset is not None and _clock() - entry.fetched_at < KEYS_SECONDS:
        verifier = keyset.find(kid, algorithm)
        if verifier is not None:
            return verifier
    # Unknown kid (rotation, OIDC Core 10.1.1), keys too old, or never fetched.
    _refresh(entry, config)
    if entry.keyset is None:
        raise unauthorized(UNAVAILABLE)
    verifier = entry.keyset.find(kid, algorithm)
    if verifier is None:
        raise unauthorized(UNKNOWN_KEY)
    return verifier


def _entry_for(config: IssuerConfig) -> _IssuerKeys:
    key = (config.issuer, config.jwks_url, config.discovery_url)
    entry = _entries.get(key)
    if entry is None:
        with _entries_lock:
            entry = _entries.setdefault(key, _IssuerKeys())
    return entry


def _refresh(entry: _IssuerKeys, config: IssuerConfig) -> None:
    """Fetch the key set unless one was tried in the last REFETCH_SECONDS.

    The bound also covers failures and the threads that queued behind a fetch: a flood of tokens with
    random kids, or an issuer that is down, costs the issuer one request per REFETCH_SECONDS at most.
    On failure the previous keys, if any, are kept: an IdP outage must not log everyone out.
    """
    with entry.lock:
        now = _clock()
        if now - entry.attempted_at < REFETCH_SECONDS:
            return
        entry.attempted_at = now
        try:
            keyset = _parse_keyset(_get_json(_jwks_location(entry, config)))
        except Exception as exc:  # the IdP is outside our control: any failure is only "no new keys"
            entry.jwks_uri = ""  # the keys may have moved: ask the discovery document again next time
            logger.warning("Could not fetch the signing keys of issuer %s: %s", config.issuer, exc)
            return
        entry.keyset, entry.fetched_at = keyset, now


def _jwks_location(entry: _IssuerKeys, config: IssuerConfig) -> str:
    if config.jwks_url:
        return config.jwks_url
    if entry.jwks_uri and _clock() - entry.jwks_uri_at < KEYS_SECONDS:
        return entry.jwks_uri
    document = _get_json(config.discovery_url)
    if not isinstance(document, dict):
        raise _FetchError("the discovery document is not a JSON object")
    # Discovery section 4.3: a document naming another issuer is not this issuer's.
    if document.get("issuer") != config.issuer:
        raise _FetchError("the discovery document names another issuer")
    uri = document.get("jwks_uri")
    if not isinstance(uri, str) or urlsplit(uri).scheme not in _SCHEMES:
        raise _FetchError("the discovery document has no http(s) jwks_uri")
    entry.jwks_uri, entry.jwks_uri_at = uri, _clock()
    return uri


def _parse_keyset(document: object) -> _KeySet:
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise _FetchError("the document is not a JWK Set")
    keys = tuple(key for key in map(_parse_key, document["keys"]) if key is not None)
    by_kid: dict[str, list[_Key]] = {}
    for key in keys:
        if key.kid is not None:
            by_kid.setdefault(key.kid, []).append(key)
    return _KeySet(keys, by_kid)


def _parse_key(entry: object) -> _Key | None:
    """A usable signature-verification key, or None for anything else (skipped, not fatal:
    one odd entry must not disable the issuer's other keys)."""
    if not isinstance(entry, dict) or entry.get("kty") not in ("RSA", "EC", "OKP"):
        return None  # also drops `oct`: a symmetric key published in a JWK Set verifies nothing
    if entry.get("use", "sig") != "sig":
        return None
    ops = entry.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        return None
    kid, alg, crv = entry.get("kid"), entry.get("alg"), entry.get("crv")
    if kid is not None and not isinstance(kid, str):
        return None
    if alg is not None and (not isinstance(alg, str) or alg not in ALGORITHMS):
        return None
    key = _Key(kid, entry["kty"], crv if isinstance(crv, str) else None, alg, _public_members(entry))
    algorithm = alg or _default_algorithm(key)
    if algorithm is None or not key.fits(algorithm):
        return None
    try:
        _build(key, algorithm)  # proves the key material now rather than on a request
    except Exception as exc:
        logger.warning("Skipping an unusable key %r of a JWK Set: %s", kid, exc)
        return None
    return key


def _default_algorithm(key: _Key) -> str | None:
    if key.kty == "RSA":
        return "RS256"
    if key.kty == "OKP":
        return "EdDSA"
    return {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}.get(key.crv or "")


def _public_members(entry: Mapping[str, Any]) -> Mapping[str, Any]:
    return {name: entry[name] for name in _PUBLIC_MEMBERS if name in entry}


def _verifier(key: _Key, algorithm: str) -> jwt.PyJWK:
    try:
        return _build(key, algorithm)
    except Exception:
        raise unauthorized("Signing key of the issuer is unusable") from None


def _build(key: _Key, algorithm: str) -> jwt.PyJWK:
    """Raises on key material that does not make a key of that algorithm, or a weak RSA key."""
    verifier = jwt.PyJWK(dict(key.jwk), algorithm)
    size = getattr(verifier.key, "key_size", None)
    if key.kty == "RSA" and (not isinstance(size, int) or size < MIN_RSA_BITS):
        raise ValueError(f"RSA key shorter than {MIN_RSA_BITS} bits")
    return verifier


# --- Fetching ---


class _FetchError(Exception):
    pass


class _HttpRedirectsOnly(urllib.request.HTTPRedirectHandler):
    # urllib would also follow a redirect to ftp://; keys come over http(s) only.
    def redirect_request(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        if urlsplit(newurl).scheme not in _SCHEMES:
            return None
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_opener = urllib.request.build_opener(_HttpRedirectsOnly)


def _get_json(url: str) -> object:
    if urlsplit(url).scheme not in _SCHEMES:
        raise _FetchError("the URL is not http(s)")
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with _opener.open(request, timeout=FETCH_TIMEOUT) as response:
            body = response.read(MAX_DOCUMENT_BYTES + 1)
    except (OSError, ValueError, http.client.HTTPException) as exc:
        raise _FetchError(f"{url}: {exc}") from exc
    if len(body) > MAX_DOCUMENT_BYTES:
        raise _FetchError(f"{url}: the document is larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise _FetchError(f"{url}: the document is not JSON") from exc
