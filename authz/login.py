"""End users sign in here: patients, related persons and practitioners using a SMART app.

The OAuth authorization endpoint (django-oauth-toolkit, `/oauth/authorize/`) sends a visitor who is
not signed in to settings.LOGIN_URL, `/accounts/login/`, and back to `next` afterwards (SMART App
Launch, "Obtain authorization code": the server authenticates the end user its own way). Any active
Django user may sign in, staff or not; the console's own login at `/admin/login/` stays staff-only.

- CSRF-protected (Django's LoginView): a third-party page cannot sign a browser in as someone else.
- No user enumeration: a wrong password and an unknown name give the same message, and Django's
  ModelBackend runs the password hasher for an unknown name too, so the answer takes as long.
- Throttled per account name: after FHIR_LOGIN_MAX_FAILURES failed attempts within
  FHIR_LOGIN_FAILURE_WINDOW seconds the name is refused (429) without checking the password, the
  same way whether or not the account exists. Counted by name, not by address: behind the TLS proxy
  every visitor has the proxy's address. Counters live in Django's cache (Redis when REDIS_URL is
  set, else per process).
- `next` must stay on this site (LoginView refuses other hosts).
"""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.views.generic import TemplateView

_PREFIX = "fhir-login-failures:"


def _key(username: str) -> str:
    # Hashed: the cache does not need the names, and a key stays short and of safe characters.
    return _PREFIX + hashlib.sha256(username.strip().casefold().encode()).hexdigest()


def failures(username: str) -> int:
    return cache.get(_key(username), 0)


def _note_failure(username: str) -> None:
    key = _key(username)
    window = settings.FHIR_LOGIN_FAILURE_WINDOW
    if cache.add(key, 1, window):
        return
    try:
        cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, window)


class SignInView(auth_views.LoginView):
    """Django's LoginView (CSRF-protected, never cached, `next` kept on this site), throttled."""

    template_name = "accounts/login.html"
    redirect_authenticated_user = True

    def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        username = request.POST.get("username", "")
        if failures(username) >= settings.FHIR_LOGIN_MAX_FAILURES:
            context = self.get_context_data(form=self.get_form_class()(request), locked=True)
            return self.render_to_response(context, status=429)
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form) -> HttpResponse:
        _note_failure(self.request.POST.get("username", ""))
        return super().form_invalid(form)

    def form_valid(self, form) -> HttpResponse:
        cache.delete(_key(self.request.POST.get("username", "")))
        return super().form_valid(form)


class SignOutView(auth_views.LogoutView):
    """POST only (Django's LogoutView), so that a link on another site cannot sign anyone out."""

    template_name = "accounts/logged_out.html"


class SignedInView(LoginRequiredMixin, TemplateView):
    """Where a sign-in without `next` lands (LOGIN_REDIRECT_URL): who is signed in, and sign out."""

    template_name = "accounts/signed_in.html"
