"""Production transport security (issue 10, item 12): secure cookies, HSTS, HTTPS redirect, https-only
OAuth redirect URIs, and FHIR_INSECURE_HTTP for plain-HTTP runs (the benchmark, the live tests).

Settings are read once per process, so each case imports the production settings in a subprocess
with its own environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_PRINT = """
import json
from django.conf import settings
print(json.dumps({
    "session": getattr(settings, "SESSION_COOKIE_SECURE", False),
    "csrf": getattr(settings, "CSRF_COOKIE_SECURE", False),
    "redirect": getattr(settings, "SECURE_SSL_REDIRECT", False),
    "hsts": getattr(settings, "SECURE_HSTS_SECONDS", 0),
    "subdomains": getattr(settings, "SECURE_HSTS_INCLUDE_SUBDOMAINS", False),
    "proxy": getattr(settings, "SECURE_PROXY_SSL_HEADER", None),
    "schemes": settings.OAUTH2_PROVIDER["ALLOWED_REDIRECT_URI_SCHEMES"],
}))
"""


def _run(tmp_path: Path, *args: str, **extra: str) -> subprocess.CompletedProcess:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FHIR_", "SECURE_", "OAUTH_", "DJANGO_")) and k != "DATABASE_URL"
    }
    env.update(
        DJANGO_SETTINGS_MODULE="fhirplatform.settings.production",
        SECRET_KEY="production-test-" + "k" * 50,
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        OIDC_RSA_PRIVATE_KEY_FILE=str(tmp_path / "oidc-key.pem"),
        FHIR_PSEUDONYM_KEY_FILE=str(tmp_path / "pseudonym.key"),
        **extra,
    )
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def _settings(tmp_path: Path, **extra: str) -> dict:
    done = _run(tmp_path, "-c", "import django; django.setup()\n" + _PRINT, **extra)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_production_is_https_only(tmp_path):
    values = _settings(tmp_path)
    assert values["session"] and values["csrf"] and values["redirect"]
    assert values["hsts"] >= 365 * 24 * 3600 and values["subdomains"]
    assert values["proxy"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert values["schemes"] == ["https"]


def test_tls_terminated_here_trusts_no_header(tmp_path):
    assert _settings(tmp_path, FHIR_TLS_UPSTREAM="false")["proxy"] is None


def test_insecure_http_for_local_runs_and_the_benchmark(tmp_path):
    values = _settings(tmp_path, FHIR_INSECURE_HTTP="true")
    assert not (values["session"] or values["csrf"] or values["redirect"] or values["hsts"])
    assert "http" in values["schemes"]


def test_custom_native_schemes_but_never_http(tmp_path):
    assert _settings(tmp_path, OAUTH_REDIRECT_URI_SCHEMES="https,com.example.app")["schemes"] == [
        "https",
        "com.example.app",
    ]
    refused = _run(tmp_path, "-c", "import django; django.setup()", OAUTH_REDIRECT_URI_SCHEMES="https,http")
    assert refused.returncode != 0 and "OAUTH_REDIRECT_URI_SCHEMES" in refused.stderr


def test_check_deploy_leaves_only_hsts_preload(tmp_path):
    done = _run(tmp_path, "manage.py", "check", "--deploy")
    output = done.stdout + done.stderr
    warnings = sorted({line.split(")")[0].split("(")[-1] for line in output.splitlines() if "?: (" in line})
    # Preload is a commitment to the browsers' lists that only the operator can make.
    assert warnings == ["security.W021"], output
