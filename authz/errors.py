"""The refusals of authentication: 401 with a `WWW-Authenticate` challenge and an OperationOutcome.

RFC 6750 section 3 names the challenge parameters; the description never repeats the credential.
"""

from __future__ import annotations

from resources.outcomes import FhirError, Issue


def unauthorized(description: str, *, error: str = "invalid_token") -> FhirError:
    """A credential was presented and refused (expired, forged, revoked, unknown...)."""
    safe = description.replace('"', "'")
    challenge = f'Bearer realm="fhir", error="{error}", error_description="{safe}"'
    return FhirError(401, [Issue("login", description)], {"WWW-Authenticate": challenge})


def credentials_required(description: str = "Authentication is required") -> FhirError:
    """No credential was presented and the request needs one."""
    return FhirError(401, [Issue("login", description)], {"WWW-Authenticate": 'Bearer realm="fhir"'})
