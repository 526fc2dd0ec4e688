"""Production: DEBUG off, secret key required, database required, HTTPS only.

Transport security (Django's deployment checklist, `manage.py check --deploy`): cookies are sent
over HTTPS only, plain HTTP is redirected, browsers are told to keep to HTTPS (HSTS), and OAuth
redirect URIs must be https (RFC 9700 section 2.1; SMART App Launch requires TLS). TLS is normally
terminated by a proxy in front of gunicorn, which must set `X-Forwarded-Proto` (and overwrite any
value the client sent): FHIR_TLS_UPSTREAM=true (the default) trusts that header. A server that
terminates TLS itself sets FHIR_TLS_UPSTREAM=false.

FHIR_INSECURE_HTTP=true serves plain HTTP instead (local runs of the production settings, the
benchmark, tests on 127.0.0.1): none of the above applies then. Never on a network.
"""

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import OAUTH2_PROVIDER, SECRET_KEY, _int_setting, env

DEBUG = False
if SECRET_KEY.startswith("embedded-mode") and not env.bool("ALLOW_INSECURE_SECRET_KEY", default=False):
    raise ImproperlyConfigured("SECRET_KEY must be set in production")

FHIR_INSECURE_HTTP = env.bool("FHIR_INSECURE_HTTP", default=False)
FHIR_TLS_UPSTREAM = env.bool("FHIR_TLS_UPSTREAM", default=True)

if not FHIR_INSECURE_HTTP:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    # One year, subdomains included (a subdomain served over HTTP could set cookies for this one).
    # Preload is a commitment to the browsers' lists that only the operator can make.
    SECURE_HSTS_SECONDS = _int_setting("SECURE_HSTS_SECONDS", 365 * 24 * 3600, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
    if FHIR_TLS_UPSTREAM:
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # https redirect URIs, plus any custom scheme a native app registers (RFC 8252 section 7.1), but
    # never plain http: the authorization code would cross the network in clear.
    _schemes = env.list("OAUTH_REDIRECT_URI_SCHEMES", default=["https"])
    if "http" in _schemes:
        raise ImproperlyConfigured(
            "OAUTH_REDIRECT_URI_SCHEMES may not include http in production (set FHIR_INSECURE_HTTP=true "
            "only for local runs)"
        )
    OAUTH2_PROVIDER = {
        **OAUTH2_PROVIDER,
        "ALLOWED_REDIRECT_URI_SCHEMES": _schemes,
        "COMPLIANT_BCP_RFC9700_REDIRECT_URI_SCHEME": True,
    }
