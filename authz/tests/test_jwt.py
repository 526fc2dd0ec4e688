"""Verification of external JWTs (authz/jwt.py) and the trusted-issuer list (authz/issuers.py),
against a real JWKS server on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import logging
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.exceptions import ImproperlyConfigured

from authz import issuers
from authz import jwt as authz_jwt
from authz.models import TrustedIssuer
from authz.tests.idp import AUDIENCE, IdentityProvider, Keys, b64, hand_made, public_jwk, serve, sign
from resources.outcomes import FhirError

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def idp() -> Iterator[IdentityProvider]:
    with serve() as provider:
        yield provider


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(authz_jwt, "_clock", lambda: fake.now)
    return fake


@pytest.fixture(autouse=True)
def fresh(idp: IdentityProvider, settings: Any) -> Iterator[None]:
    idp.reset()
    settings.FHIR_TRUSTED_ISSUERS = []
    settings.FHIR_JWT_LEEWAY = 60
    issuers.clear_cache()
    authz_jwt.clear_cache()
    yield
    issuers.clear_cache()
    authz_jwt.clear_cache()


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


def trust(settings: Any, idp: IdentityProvider, name: str = "a", **fields: Any) -> str:
    entry = {"issuer": idp.issuer(name), "audience": AUDIENCE, "jwks_url": idp.jwks_url(name), **fields}
    settings.FHIR_TRUSTED_ISSUERS = [*settings.FHIR_TRUSTED_ISSUERS, entry]
    return idp.issuer(name)


def refused(token: str, reason: str) -> FhirError:
    with pytest.raises(FhirError) as caught:
        authz_jwt.verify(token)
    exc = caught.value
    diagnostics = " ".join(issue.diagnostics for issue in exc.issues)
    assert exc.status == 401
    assert "WWW-Authenticate" in exc.headers
    assert diagnostics == reason
    assert token not in diagnostics and token not in exc.headers["WWW-Authenticate"]
    return exc


@pytest.fixture
def issuer_a(settings: Any, idp: IdentityProvider, keys: Keys) -> str:
    idp.keys["a"] = [public_jwk(keys.rsa1, "rsa1"), public_jwk(keys.ec1, "ec1", alg="ES256")]
    return trust(settings, idp, "a")


# --- Accepted tokens ---


def test_valid_rs256_token(issuer_a: str, keys: Keys) -> None:
    config, claims = authz_jwt.verify(sign(keys.rsa1, iss=issuer_a, email="a@example.org"))
    assert config.issuer == issuer_a and config.audience == AUDIENCE
    assert claims["sub"] == "user-1" and claims["email"] == "a@example.org"


def test_valid_es256_token(issuer_a: str, keys: Keys) -> None:
    _, claims = authz_jwt.verify(sign(keys.ec1, iss=issuer_a, kid="ec1", alg="ES256"))
    assert claims["sub"] == "user-1"


def test_keys_are_fetched_once_and_cached(issuer_a: str, keys: Keys, idp: IdentityProvider) -> None:
    for _ in range(3):
        authz_jwt.verify(sign(keys.rsa1, iss=issuer_a))
        authz_jwt.verify(sign(keys.ec1, iss=issuer_a, kid="ec1", alg="ES256"))
    assert idp.requests == {"/a/jwks": 1}


def test_concurrent_first_requests_fetch_once(issuer_a: str, keys: Keys, idp: IdentityProvider) -> None:
    token = sign(keys.rsa1, iss=issuer_a)
    authz_jwt.verify(token)  # the issuer list is read once outside the threads (database access)
    authz_jwt.clear_cache()
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda _: authz_jwt.verify(token)[1]["sub"], range(32)))
    assert results == ["user-1"] * 32
    assert idp.requests["/a/jwks"] == 2


def test_discovery_document_finds_the_keys(settings: Any, idp: IdentityProvider, keys: Keys) -> None:
    idp.keys["d"] = [public_jwk(keys.rsa1, "rsa1")]
    issuer = trust(settings, idp, "d", jwks_url="", discovery_url=idp.discovery_url("d"))
    authz_jwt.verify(sign(keys.rsa1, iss=issuer))
    authz_jwt.verify(sign(keys.rsa1, iss=issuer))
    assert idp.requests == {"/d/.well-known/openid-configuration": 1, "/d/jwks": 1}


def test_discovery_document_of_another_issuer_is_refused(
    settings: Any, idp: IdentityProvider, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    idp.keys["d"] = [public_jwk(keys.rsa1, "rsa1")]
    idp.discovery_issuer = "https://elsewhere.example.org"
    issuer = trust(settings, idp, "d", jwks_url="", discovery_url=idp.discovery_url("d"))
    with caplog.at_level(logging.WARNING, logger="authz.jwt"):
        refused(sign(keys.rsa1, iss=issuer), "Signing keys of the issuer are unavailable")
    assert "another issuer" in caplog.text
    assert idp.requests == {"/d/.well-known/openid-configuration": 1}


def test_token_without_kid_uses_the_only_key(settings: Any, idp: IdentityProvider, keys: Keys) -> None:
    idp.keys["s"] = [public_jwk(keys.rsa1, None)]
    issuer = trust(settings, idp, "s")
    _, claims = authz_jwt.verify(sign(keys.rsa1, iss=issuer, kid=None))
    assert claims["sub"] == "user-1"


def test_token_without_kid_is_refused_when_the_issuer_has_several_keys(issuer_a: str, keys: Keys) -> None:
    refused(sign(keys.rsa1, iss=issuer_a, kid=None), "Token names no signing key and the issuer has several")


def test_ps256_with_an_rsa_key_without_alg(issuer_a: str, keys: Keys) -> None:
    _, claims = authz_jwt.verify(sign(keys.rsa1, iss=issuer_a, alg="PS256"))
    assert claims["sub"] == "user-1"


def test_custom_subject_claim(settings: Any, idp: IdentityProvider, keys: Keys) -> None:
    idp.keys["c"] = [public_jwk(keys.rsa1, "rsa1")]
    issuer = trust(settings, idp, "c", subject_claim="oid")
    config, claims = authz_jwt.verify(sign(keys.rsa1, iss=issuer, sub=None, oid="object-9"))
    assert claims[config.subject_claim] == "object-9"
    refused(sign(keys.rsa1, iss=issuer), "Token has no subject")


# --- Time claims ---


def test_expired(issuer_a: str, keys: Keys) -> None:
    now = int(time.time())
    refused(sign(keys.rsa1, iss=issuer_a, iat=now - 600, exp=now - 120), "Token has expired")


def test_exp_is_required(issuer_a: str, keys: Keys) -> None:
    refused(sign(keys.rsa1, iss=issuer_a, exp=None), "Token has no 'exp' claim")


def test_not_yet_valid(issuer_a: str, keys: Keys) -> None:
    refused(sign(keys.rsa1, iss=issuer_a, nbf=int(time.time()) + 120), "Token is not valid yet")


def test_issued_in_the_future_beyond_leeway(issuer_a: str, keys: Keys) -> None:
    refused(sign(keys.rsa1, iss=issuer_a, iat=int(time.time()) + 120), "Token is not valid yet")


def test_within_leeway_is_accepted(issuer_a: str, keys: Keys) -> None:
    now = int(time.time())
    authz_jwt.verify(sign(keys.rsa1, iss=issuer_a, iat=now + 30, nbf=now + 30, exp=now - 30))


def test_leeway_comes_from_settings(issuer_a: str, keys: Keys, settings: Any) -> None:
    settings.FHIR_JWT_LEEWAY = 0
    refused(sign(keys.rsa1, iss=issuer_a, exp=int(time.time()) - 30), "Token has expired")


# --- Audience, issuer, subject ---


def test_wrong_audience(issuer_a: str, keys: Keys) -> None:
    refused(sign(keys.rsa1, iss=issuer_a, aud="https://other.example.org"), "Token audience does not match")


def test_audience_as_a_list(issuer_a: str, keys: Keys) -> None:
    authz_jwt.verify(sign(keys.rsa1, iss=issuer_a, aud=["https://other.example.org", AUDIENCE]))
    refused(sign(keys.rsa1, iss=issuer_a, aud=["https://other.example.org"]), "Token audience does not match")


def test_missing_audience(issuer_a: str, keys: Keys) -> None:
    refused(sign(keys.rsa1, iss=issuer_a, aud=None), "Token has no 'aud' claim")


def test_untrusted_issuer(issuer_a: str, keys: Keys) -> None:
    refused(sign(keys.rsa1, iss="https://evil.example.org"), "Token issuer is not trusted")
    refused(sign(keys.rsa1, iss=issuer_a + "/"), "Token issuer is not trusted")  # exact, no normalising
    refused(sign(keys.rsa1, iss=None), "Token issuer is not trusted")


def test_wrong_issuer_keys_do_not_verify(
    settings: Any, idp: IdentityProvider, keys: Keys, issuer_a: str
) -> None:
    # Issuer b publishes the same kid with another key: a token of a claiming to be from b fails.
    idp.keys["b"] = [public_jwk(keys.rsa2, "rsa1")]
    issuer_b = trust(settings, idp, "b")
    refused(sign(keys.rsa1, iss=issuer_b), "Token signature is invalid")
    authz_jwt.verify(sign(keys.rsa2, iss=issuer_b))


def test_missing_subject(issuer_a: str, keys: Keys) -> None:
    refused(sign(keys.rsa1, iss=issuer_a, sub=None), "Token has no subject")
    refused(sign(keys.rsa1, iss=issuer_a, sub=""), "Token has no subject")
    refused(sign(keys.rsa1, iss=issuer_a, sub=42), "Token has no subject")


# --- Keys: unknown kid, rotation, outages ---


def test_unknown_kid_refetches_at_most_once_per_interval(
    issuer_a: str, keys: Keys, idp: IdentityProvider, clock: Clock
) -> None:
    authz_jwt.verify(sign(keys.rsa1, iss=issuer_a))
    clock.advance(authz_jwt.REFETCH_SECONDS + 1)
    refused(sign(keys.rsa2, iss=issuer_a, kid="random-1"), "Unknown signing key")
    assert idp.requests["/a/jwks"] == 2
    clock.advance(5)
    refused(sign(keys.rsa2, iss=issuer_a, kid="random-2"), "Unknown signing key")
    assert idp.requests["/a/jwks"] == 2
    authz_jwt.verify(sign(keys.rsa1, iss=issuer_a))  # known keys still served
    clock.advance(authz_jwt.REFETCH_SECONDS)
    refused(sign(keys.rsa2, iss=issuer_a, kid="random-3"), "Unknown signing key")
    assert idp.requests["/a/jwks"] == 3


def test_key_rotation(issuer_a: str, keys: Keys, idp: IdentityProvider, clock: Clock) -> None:
    authz_jwt.verify(sign(keys.rsa1, iss=issuer_a))
    idp.keys["a"] = [public_jwk(keys.rsa2, "rsa2")]
    clock.advance(authz_jwt.REFETCH_SECONDS + 1)
    _, claims = authz_jwt.verify(sign(keys.rsa2, iss=issuer_a, kid="rsa2"))
    assert claims["sub"] == "user-1"
    assert idp.requests["/a/jwks"] == 2
    refused(sign(keys.rsa1, iss=issuer_a), "Unknown signing key")  # the retired key is gone


def test_keys_are_refetched_after_an_hour(
    issuer_a: str, keys: Keys, idp: IdentityProvider, clock: Clock
) -> None:
    authz_jwt.verify(sign(keys.rsa1, iss=issuer_a))
    clock.advance(authz_jwt.KEYS_SECONDS + 1)
    authz_jwt.verify(sign(keys.rsa1, iss=issuer_a))
    assert idp.requests["/a/jwks"] == 2


def test_old_keys_are_kept_when_the_issuer_fails(
    issuer_a: str, keys: Keys, idp: IdentityProvider, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    authz_jwt.verify(sign(keys.rsa1, iss=issuer_a))
    idp.status = 500
    clock.advance(authz_jwt.KEYS_SECONDS + 1)
    token = sign(keys.rsa1, iss=issuer_a)
    with caplog.at_level(logging.WARNING, logger="authz.jwt"):
        authz_jwt.verify(token)
    assert idp.requests["/a/jwks"] == 2
    assert "Could not fetch the signing keys" in caplog.text and token not in caplog.text
    authz_jwt.verify(token)  # no retry within the interval
    assert idp.requests["/a/jwks"] == 2


def test_jwks_server_down(settings: Any, keys: Keys, caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    issuer = "https://down.example.org"
    settings.FHIR_TRUSTED_ISSUERS = [
        {"issuer": issuer, "audience": AUDIENCE, "jwks_url": f"http://127.0.0.1:{port}/jwks"}
    ]
    token = sign(keys.rsa1, iss=issuer)
    with caplog.at_level(logging.WARNING, logger="authz.jwt"):
        refused(token, "Signing keys of the issuer are unavailable")
    assert "Could not fetch the signing keys of issuer https://down.example.org" in caplog.text
    assert token not in caplog.text


def test_jwks_that_is_not_json_is_unavailable(settings: Any, idp: IdentityProvider, keys: Keys) -> None:
    idp.keys["n"] = ["x"]
    issuer = trust(settings, idp, "n", jwks_url=idp.discovery_url("missing"))  # a 404
    refused(sign(keys.rsa1, iss=issuer), "Signing keys of the issuer are unavailable")


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")  # signing with the weak key
def test_garbage_entries_in_the_jwks_are_skipped(settings: Any, idp: IdentityProvider, keys: Keys) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    idp.keys["g"] = [
        "not a key",
        None,
        {"kid": "no-kty"},
        {"kty": "RSA", "kid": "bad", "n": "!!!", "e": "AQAB"},
        {"kty": "EC", "kid": "bad-ec", "crv": "P-256", "x": "AAAA", "y": "AAAA"},
        {"kty": "oct", "kid": "sym", "k": b64(b"secret" * 8)},
        {"kty": "RSA", "kid": ["list"], "n": "AQAB", "e": "AQAB"},
        {**public_jwk(keys.rsa2, "enc"), "use": "enc"},
        {**public_jwk(keys.rsa2, "odd-alg"), "alg": ["RS256"]},
        public_jwk(weak, "weak"),
        public_jwk(keys.rsa1, "rsa1"),
    ]
    issuer = trust(settings, idp, "g")
    _, claims = authz_jwt.verify(sign(keys.rsa1, iss=issuer))
    assert claims["sub"] == "user-1"
    for kid in ("bad", "bad-ec", "enc", "odd-alg"):
        refused(sign(keys.rsa2, iss=issuer, kid=kid), "Unknown signing key")
    refused(sign(weak, iss=issuer, kid="weak"), "Unknown signing key")
    refused(
        hand_made({"alg": "HS256", "kid": "sym"}, {"iss": issuer}, b"secret" * 8),
        "Token algorithm is not allowed",
    )


def test_private_members_of_a_jwk_are_not_used(settings: Any, idp: IdentityProvider, keys: Keys) -> None:
    private = jwt.algorithms.RSAAlgorithm.to_jwk(keys.rsa1, as_dict=True)
    idp.keys["p"] = [{**private, "kid": "rsa1", "key_ops": ["verify"]}]
    issuer = trust(settings, idp, "p")
    authz_jwt.verify(sign(keys.rsa1, iss=issuer))


# --- Algorithms and forgeries ---


def test_alg_none_is_refused(issuer_a: str) -> None:
    payload = {"iss": issuer_a, "aud": AUDIENCE, "sub": "user-1", "exp": int(time.time()) + 300}
    refused(hand_made({"alg": "none", "typ": "JWT"}, payload), "Token algorithm is not allowed")
    refused(hand_made({"typ": "JWT"}, payload), "Token algorithm is not allowed")


def test_hs256_signed_with_the_public_key_is_refused(issuer_a: str, keys: Keys) -> None:
    pem = keys.rsa1.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    payload = {"iss": issuer_a, "aud": AUDIENCE, "sub": "user-1", "exp": int(time.time()) + 300}
    refused(
        hand_made({"alg": "HS256", "typ": "JWT", "kid": "rsa1"}, payload, pem),
        "Token algorithm is not allowed",
    )


def test_algorithm_must_fit_the_key_type(issuer_a: str, keys: Keys) -> None:
    refused(
        sign(keys.ec1, iss=issuer_a, kid="rsa1", alg="ES256"),
        "Token algorithm does not match the signing key",
    )
    refused(sign(keys.rsa1, iss=issuer_a, kid="ec1"), "Token algorithm does not match the signing key")


def test_the_jwk_alg_pins_the_algorithm(settings: Any, idp: IdentityProvider, keys: Keys) -> None:
    idp.keys["pin"] = [public_jwk(keys.rsa1, "rsa1", alg="RS256")]
    issuer = trust(settings, idp, "pin")
    authz_jwt.verify(sign(keys.rsa1, iss=issuer))
    refused(sign(keys.rsa1, iss=issuer, alg="PS256"), "Token algorithm does not match the signing key")


def test_tampered_payload(issuer_a: str, keys: Keys) -> None:
    header, payload, signature = sign(keys.rsa1, iss=issuer_a).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "admin"
    refused(f"{header}.{b64(json.dumps(claims).encode())}.{signature}", "Token signature is invalid")


def test_signature_of_another_key(issuer_a: str, keys: Keys) -> None:
    refused(sign(keys.rsa2, iss=issuer_a), "Token signature is invalid")


@pytest.mark.parametrize(
    "token",
    [
        "abc",
        "a.b",
        "a.b.c.d",
        "!!!.@@@.###",
        b64(b"not json") + "." + b64(b"{}") + ".",
        b64(b'{"alg": "RS256"}') + "." + b64(b"not json") + ".",
        b64(b'{"alg": "RS256"}') + "." + b64(b"[1, 2]") + ".",
        b64(b"[]") + "." + b64(b"{}") + ".",
        b64(b'{"alg": "RS256", "kid": 7}') + "." + b64(b"{}") + ".",
        "..",
    ],
)
def test_malformed_tokens(token: str) -> None:
    refused(token, "Malformed token")


# --- The trusted issuer list ---


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"issuer": "https://x.example.org", "jwks_url": "https://x.example.org/jwks"}, "'audience'"),
        ({"audience": AUDIENCE, "jwks_url": "https://x.example.org/jwks"}, "'issuer'"),
        ({"issuer": "https://x.example.org", "audience": AUDIENCE}, "'jwks_url' or a 'discovery_url'"),
        (
            {"issuer": "https://x.example.org", "audience": AUDIENCE, "jwks_url": "u", "colour": "red"},
            "unknown keys: colour",
        ),
        (
            {"issuer": "https://x.example.org", "audience": AUDIENCE, "jwks_url": "u", "match_email": "yes"},
            "'match_email'",
        ),
        ("https://x.example.org", "must be an object"),
    ],
)
def test_bad_issuer_settings(settings: Any, entry: Any, message: str) -> None:
    settings.FHIR_TRUSTED_ISSUERS = [entry]
    with pytest.raises(ImproperlyConfigured) as caught:
        issuers.trusted_issuers()
    assert "FHIR_TRUSTED_ISSUERS[0]" in str(caught.value) and message in str(caught.value)


def test_issuer_settings_are_read(settings: Any) -> None:
    settings.FHIR_TRUSTED_ISSUERS = [
        {
            "issuer": "https://x.example.org",
            "audience": AUDIENCE,
            "discovery_url": "https://x.example.org/.well-known/openid-configuration",
            "roles_claim": "realm_access.roles",
            "role_map": {"clinician": "Practitioner"},
            "match_email": False,
        },
        {"issuer": "https://off.example.org", "audience": AUDIENCE, "jwks_url": "u", "enabled": False},
    ]
    config = issuers.trusted_issuers()["https://x.example.org"]
    assert config.roles_claim == "realm_access.roles" and config.match_email is False
    assert dict(config.role_map) == {"clinician": "Practitioner"}
    assert config.subject_claim == "sub" and config.fhir_user_claim == "fhirUser"
    assert "https://off.example.org" not in issuers.trusted_issuers()
    hash(config)  # usable as a key
    with pytest.raises(TypeError):
        config.role_map["x"] = "y"  # type: ignore[index]


def test_issuer_list_is_cached(settings: Any, django_assert_num_queries: Any) -> None:
    issuers.trusted_issuers()
    with django_assert_num_queries(0):
        issuers.trusted_issuers()
    TrustedIssuer.objects.create(
        issuer="https://new.example.org", audience=AUDIENCE, jwks_url="https://n/jwks"
    )
    assert "https://new.example.org" in issuers.trusted_issuers()  # a save in this process clears it


def test_database_issuer_is_used_and_wins_over_settings(
    settings: Any, idp: IdentityProvider, keys: Keys
) -> None:
    idp.keys["a"] = [public_jwk(keys.rsa1, "rsa1")]
    trust(settings, idp, "a", audience="https://settings-audience.example.org")
    TrustedIssuer.objects.create(
        issuer=idp.issuer("a"),
        audience=AUDIENCE,
        jwks_url=idp.jwks_url("a"),
        role_map={"doc": "Practitioner"},
        default_role="Patient",
    )
    config, _ = authz_jwt.verify(sign(keys.rsa1, iss=idp.issuer("a")))
    assert config.audience == AUDIENCE and dict(config.role_map) == {"doc": "Practitioner"}
    assert config.default_role == "Patient"


def test_database_only_issuer(idp: IdentityProvider, keys: Keys) -> None:
    idp.keys["db"] = [public_jwk(keys.ec1, "ec1")]
    TrustedIssuer.objects.create(
        issuer=idp.issuer("db"), audience=AUDIENCE, discovery_url=idp.discovery_url("db")
    )
    config, _ = authz_jwt.verify(sign(keys.ec1, iss=idp.issuer("db"), kid="ec1", alg="ES256"))
    assert config.discovery_url == idp.discovery_url("db")


def test_disabled_database_issuer_is_not_trusted(idp: IdentityProvider, keys: Keys) -> None:
    idp.keys["db"] = [public_jwk(keys.rsa1, "rsa1")]
    TrustedIssuer.objects.create(
        issuer=idp.issuer("db"), audience=AUDIENCE, jwks_url=idp.jwks_url("db"), enabled=False
    )
    refused(sign(keys.rsa1, iss=idp.issuer("db")), "Token issuer is not trusted")
