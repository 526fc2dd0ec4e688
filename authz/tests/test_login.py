"""End users' sign-in page (issue 10, item 12): the OAuth authorization flow used to send visitors to
the staff-only console login, so a patient could not use a SMART app. Now /accounts/login/ signs in
any active user, CSRF-protected, without telling which account names exist, throttled per name."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.test import Client, override_settings

from authz import ruleset
from authz.context import AccessContext
from authz.models import IdentityLink
from authz.tests.test_oauth import (
    Pkce,
    _authorize_params,
    _redirect_query,
    exchange,
    public_app,  # noqa: F401  (fixture)
)
from resources.services import resource_create

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-patient-password"
RULES = """
rules:
  - {name: patient-own, role: Patient, resource: "*", operation: [read, search], validator: PatientCompartment}
"""


@pytest.fixture(autouse=True)
def _fresh_cache():
    from authz.rules import forget_rules

    cache.clear()
    forget_rules()
    yield
    cache.clear()
    forget_rules()


@pytest.fixture
def patient_user():
    """A non-staff user linked to Patient/pat (an Identity link, issuer `local`)."""
    user = get_user_model().objects.create_user("pat", password=PASSWORD)
    assert not user.is_staff
    resource_create(
        AccessContext.system("test"),
        resource_type="Patient",
        body={"resourceType": "Patient", "name": [{"family": "Pat"}]},
        fhir_id="pat",
    )
    IdentityLink.objects.create(issuer=IdentityLink.LOCAL, subject=str(user.pk), reference="Patient/pat")
    return user


def _csrf(client: Client, url: str) -> str:
    page = client.get(url)
    assert page.status_code == 200, page.content
    return client.cookies["csrftoken"].value


def _sign_in(client: Client, username: str, password: str, next_url: str = ""):
    token = _csrf(client, "/accounts/login/" + (f"?{urlencode({'next': next_url})}" if next_url else ""))
    fields = {"username": username, "password": password, "csrfmiddlewaretoken": token}
    if next_url:
        fields["next"] = next_url
    return client.post("/accounts/login/", fields)


def _message(response) -> str:
    """The page without its per-render CSRF token, to compare two answers."""
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "", response.content.decode())


def test_a_patient_uses_a_smart_app_through_authorization_code_and_pkce(patient_user, public_app):  # noqa: F811
    ruleset.replace_rules(ruleset.parse_yaml(RULES))
    browser = Client(enforce_csrf_checks=True)
    pkce = Pkce.new()
    params = _authorize_params(public_app, "openid fhirUser launch/patient patient/*.rs", pkce)
    authorize_url = "/oauth/authorize/?" + urlencode(params)

    # not signed in: the authorization endpoint sends the user to the end users' page, not /admin/
    first = browser.get(authorize_url)
    assert first.status_code == 302
    login_url = urlsplit(first["Location"])
    assert login_url.path == "/accounts/login/"
    next_url = parse_qs(login_url.query)["next"][0]
    assert next_url.startswith("/oauth/authorize/")

    signed_in = _sign_in(browser, "pat", PASSWORD, next_url)
    assert signed_in.status_code == 302 and signed_in["Location"] == next_url

    consent = browser.get(next_url)
    assert consent.status_code == 200, consent.content
    token = browser.cookies["csrftoken"].value
    approved = browser.post("/oauth/authorize/", params | {"allow": True, "csrfmiddlewaretoken": token})
    redirect = _redirect_query(approved)
    assert redirect["state"] == "st4te" and "code" in redirect

    issued = exchange(Client(), public_app, redirect["code"], pkce.verifier)
    assert issued.status_code == 200, issued.content
    body = issued.json()
    assert body["patient"] == "pat"
    api = Client()
    own = api.get("/fhir/Patient/pat", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert own.status_code == 200, own.content
    assert own.json()["id"] == "pat"


def test_the_console_login_still_refuses_non_staff(patient_user):
    """The reported problem: the only login was the console's, which refuses non-staff users."""
    browser = Client()
    response = browser.post("/admin/login/", {"username": "pat", "password": PASSWORD})
    assert response.status_code == 200 and "_auth_user_id" not in browser.session
    assert _sign_in(Client(), "pat", PASSWORD).status_code == 302


def test_sign_in_needs_the_csrf_token(patient_user):
    browser = Client(enforce_csrf_checks=True)
    _csrf(browser, "/accounts/login/")
    refused = browser.post("/accounts/login/", {"username": "pat", "password": PASSWORD})
    assert refused.status_code == 403
    assert "_auth_user_id" not in browser.session


def test_unknown_name_and_wrong_password_look_the_same(patient_user):
    wrong_password = _sign_in(Client(enforce_csrf_checks=True), "pat", "not-the-password")
    unknown_name = _sign_in(Client(enforce_csrf_checks=True), "nobody-here", "not-the-password")
    assert wrong_password.status_code == unknown_name.status_code == 200
    assert "is not correct" in _message(wrong_password)
    assert _message(wrong_password) == _message(unknown_name)


@override_settings(FHIR_LOGIN_MAX_FAILURES=3)
def test_failed_sign_ins_are_throttled_per_name(patient_user):
    for _ in range(3):
        assert _sign_in(Client(), "pat", "guess").status_code == 200
    # locked: even the right password is refused, without being checked
    locked = _sign_in(Client(), "pat", PASSWORD)
    assert locked.status_code == 429 and "Too many failed attempts" in locked.content.decode()
    # the same answer for a name that does not exist (no enumeration through the lock)
    for _ in range(3):
        _sign_in(Client(), "ghost", "guess")
    assert _sign_in(Client(), "ghost", "guess").status_code == 429
    # other names are not affected; the lock ends with the window
    get_user_model().objects.create_user("other", password=PASSWORD)
    assert _sign_in(Client(), "other", PASSWORD).status_code == 302
    cache.clear()
    assert _sign_in(Client(), "pat", PASSWORD).status_code == 302


def test_next_cannot_leave_the_site(patient_user):
    response = _sign_in(Client(), "pat", PASSWORD, "https://evil.example.org/steal")
    assert response.status_code == 302 and response["Location"] == "/accounts/"
    landing = Client()
    landing.force_login(patient_user)
    page = landing.get("/accounts/")
    assert page.status_code == 200 and b"pat" in page.content


def test_sign_out_is_post_only(patient_user):
    browser = Client()
    browser.force_login(patient_user)
    assert browser.get("/accounts/logout/").status_code == 405
    assert "_auth_user_id" in browser.session
    assert browser.post("/accounts/logout/").status_code == 200
    assert "_auth_user_id" not in browser.session


def test_pages_are_not_framed(patient_user):
    assert Client().get("/accounts/login/")["X-Frame-Options"] == "DENY"
