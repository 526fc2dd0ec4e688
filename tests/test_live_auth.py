"""End to end: every kind of credential against a gunicorn server, set up the way an operator does it
(management commands, the console's models), and the refusals a client sees."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from authz.tests.idp import AUDIENCE, Keys, hand_made, public_jwk, serve, sign

pytestmark = pytest.mark.live


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def _assert_401(response: requests.Response, secret: str = "") -> None:
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="fhir"')
    assert response.json()["resourceType"] == "OperationOutcome"
    if secret:
        assert secret not in response.text


def _shell(live, code: str) -> str:
    return live.manage("shell", "-c", code).stdout.strip()


def _patient(url: str, headers: dict) -> str:
    created = requests.post(
        f"{url}/Patient",
        json={"resourceType": "Patient", "name": [{"family": "Ortega"}]},
        headers={**headers, "Content-Type": "application/fhir+json"},
    )
    assert created.status_code == 201
    return created.json()["id"]


def test_api_tokens_from_the_command_line(live):
    token = live.token("--role", "Admin", "--label", "operator")
    assert requests.get(f"{live.url}/Patient", headers=_bearer(token)).status_code == 200
    assert requests.get(f"{live.url}/Patient").status_code == 401
    revoked = live.manage("revoke_token", token)
    assert revoked.returncode == 0 and token not in revoked.stdout
    _assert_401(requests.get(f"{live.url}/Patient", headers=_bearer(token)), token)
    bad = live.manage("issue_token", "--role", "Patient", "--identity", "Patient/none", check=False)
    assert bad.returncode == 2 and bad.stdout == "" and "does not exist" in bad.stderr
    assert live.manage("revoke_token", "nonsense", check=False).returncode == 2


def test_one_time_token_minted_by_operation_and_exchanged(live, live_admin_headers):
    patient = _patient(live.url, live_admin_headers)
    minted = requests.post(
        f"{live.url}/Patient/{patient}/$api-token",
        json={"resourceType": "Parameters", "parameter": [{"name": "kind", "valueCode": "one-time"}]},
        headers={**live_admin_headers, "Content-Type": "application/fhir+json"},
    )
    assert minted.status_code == 201
    one_time = next(p["valueString"] for p in minted.json()["parameter"] if p["name"] == "token")
    exchanged = requests.post(f"{live.url}/$exchange-token", headers=_bearer(one_time))
    assert exchanged.status_code == 201
    durable = next(p["valueString"] for p in exchanged.json()["parameter"] if p["name"] == "token")
    _assert_401(requests.post(f"{live.url}/$exchange-token", headers=_bearer(one_time)), one_time)
    # Authenticated as the Patient; the default rule set gives that role nothing yet.
    assert requests.get(f"{live.url}/Patient/{patient}", headers=_bearer(durable)).status_code == 403
    # A deleted identity authenticates nobody.
    requests.delete(f"{live.url}/Patient/{patient}", headers=live_admin_headers)
    _assert_401(requests.get(f"{live.url}/Patient/{patient}", headers=_bearer(durable)), durable)


def test_oauth_client_credentials_with_scopes(live):
    secret = secrets.token_urlsafe(24)
    _shell(
        live,
        "from oauth2_provider.models import Application; from authz.models import ClientRole;"
        "app = Application.objects.create(name='agent', client_id='agent-1', client_secret='" + secret + "',"
        " client_type='confidential', authorization_grant_type='client-credentials');"
        "ClientRole.objects.create(application=app, role='Admin')",
    )
    origin = live.url.removesuffix("/fhir")

    def token(scope: str) -> str:
        answer = requests.post(
            f"{origin}/oauth/token/",
            data={"grant_type": "client_credentials", "scope": scope},
            auth=("agent-1", secret),
        )
        assert answer.status_code == 200, answer.text
        return answer.json()["access_token"]

    full = token("system/*.cruds")
    assert requests.get(f"{live.url}/Patient", headers=_bearer(full)).status_code == 200
    read_only = token("system/Observation.rs")
    assert requests.get(f"{live.url}/Observation", headers=_bearer(read_only)).status_code == 200
    refused = requests.post(
        f"{live.url}/Observation",
        json={"resourceType": "Observation", "status": "final", "code": {"text": "x"}},
        headers={**_bearer(read_only), "Content-Type": "application/fhir+json"},
    )
    assert refused.status_code == 403 and "scopes" in refused.json()["issue"][0]["diagnostics"]
    assert requests.get(f"{live.url}/Patient", headers=_bearer(read_only)).status_code == 403
    requests.post(f"{origin}/oauth/revoke_token/", data={"token": full}, auth=("agent-1", secret))
    _assert_401(requests.get(f"{live.url}/Patient", headers=_bearer(full)), full)


def test_oauth_authorization_code_with_pkce_for_a_linked_user(live, live_admin_headers):
    patient = _patient(live.url, live_admin_headers)
    _shell(
        live,
        "from django.contrib.auth import get_user_model; from oauth2_provider.models import Application;"
        "from authz.models import IdentityLink;"
        "u = get_user_model().objects.create_superuser('ada', 'ada@example.org', 'pw-ada-123');"
        f"IdentityLink.objects.create(issuer='local', subject=str(u.pk), reference='Patient/{patient}');"
        "Application.objects.create(name='app', client_id='smart-app', client_type='public',"
        " authorization_grant_type='authorization-code', redirect_uris='http://127.0.0.1:9/callback',"
        " algorithm='RS256')",
    )
    origin = live.url.removesuffix("/fhir")
    browser = requests.Session()
    login = browser.get(f"{origin}/admin/login/")
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text).group(1)
    browser.post(
        f"{origin}/admin/login/",
        data={"username": "ada", "password": "pw-ada-123", "csrfmiddlewaretoken": csrf, "next": "/admin/"},
        headers={"Referer": f"{origin}/admin/login/"},
    )
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    params = {
        "response_type": "code",
        "client_id": "smart-app",
        "redirect_uri": "http://127.0.0.1:9/callback",
        "scope": "openid fhirUser launch/patient patient/Patient.rs",
        "state": "s1",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    form = browser.get(f"{origin}/oauth/authorize/", params=params)
    assert form.status_code == 200, form.text[:500]
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
    allowed = browser.post(
        f"{origin}/oauth/authorize/",
        data={**params, "csrfmiddlewaretoken": csrf, "allow": "Authorize"},
        headers={"Referer": form.url},
        allow_redirects=False,
    )
    assert allowed.status_code == 302, allowed.text[:500]
    code = parse_qs(urlsplit(allowed.headers["Location"]).query)["code"][0]
    answer = requests.post(
        f"{origin}/oauth/token/",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": "http://127.0.0.1:9/callback",
            "client_id": "smart-app",
            "code_verifier": verifier,
        },
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["patient"] == patient and "id_token" in body
    access = body["access_token"]
    # The token's identity is the linked Patient; the default rules give the Patient role nothing.
    assert requests.get(f"{live.url}/Patient/{patient}", headers=_bearer(access)).status_code == 403
    userinfo = requests.get(f"{origin}/oauth/userinfo/", headers=_bearer(access)).json()
    assert userinfo["fhirUser"].endswith(f"/fhir/Patient/{patient}")
    smart = requests.get(f"{live.url}/.well-known/smart-configuration").json()
    assert smart["token_endpoint"] == f"{origin}/oauth/token/"


def test_external_issuer_tokens_and_attacks(live):
    keys = Keys()
    with serve() as idp:
        idp.keys["clinic"] = [public_jwk(keys.rsa1, "rsa1")]
        issuer = idp.issuer("clinic")
        _shell(
            live,
            "from authz.models import TrustedIssuer; TrustedIssuer.objects.create("
            f"issuer='{issuer}', jwks_url='{idp.jwks_url('clinic')}', audience='{AUDIENCE}',"
            " roles_claim='roles', role_map={'ops': 'Admin'})",
        )
        time.sleep(11)  # the server caches its issuer list for 10 s
        good = sign(keys.rsa1, iss=issuer, roles=["ops"])
        assert requests.get(f"{live.url}/Patient", headers=_bearer(good)).status_code == 200
        now = int(time.time())
        attacks = {
            "expired": sign(keys.rsa1, iss=issuer, roles=["ops"], iat=now - 900, exp=now - 600),
            "not yet valid": sign(keys.rsa1, iss=issuer, roles=["ops"], nbf=now + 600),
            "wrong audience": sign(keys.rsa1, iss=issuer, roles=["ops"], aud="https://elsewhere"),
            "untrusted issuer": sign(keys.rsa1, iss="https://evil.example", roles=["ops"]),
            "unknown kid": sign(keys.rsa2, iss=issuer, kid="rotated", roles=["ops"]),
            "alg none": hand_made(
                {"alg": "none", "kid": "rsa1"}, {"iss": issuer, "aud": AUDIENCE, "sub": "x"}
            ),
            "forged signature": sign(keys.rsa2, iss=issuer, kid="rsa1", roles=["ops"]),
            "tampered": good.split(".")[0] + "." + good.split(".")[1][:-4] + "AAAA." + good.split(".")[2],
        }
        for name, token in attacks.items():
            response = requests.get(f"{live.url}/Patient", headers=_bearer(token))
            assert response.status_code == 401, (name, response.text)
            _assert_401(response, token)
        # no role, no identity: the subject is not mapped
        unmapped = sign(keys.rsa1, iss=issuer)
        _assert_401(requests.get(f"{live.url}/Patient", headers=_bearer(unmapped)))
