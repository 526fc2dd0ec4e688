"""AccessContext: who is calling, carried from the HTTP layer into every service function.

Built by authentication.py from the bearer credential (or for the platform itself by `system`);
the rule chain (rules.py) decides what it may do. It never holds a secret.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .smart import ScopeSet

PUBLIC = "Public"
SYSTEM = "System"


@dataclass(frozen=True)
class Origin:
    """Where a call came from, as the audit log records it: the transport's own words for the method
    and path (`GET /fhir/Patient/1`, a GraphQL POST, a worker's task name), never a body or a secret."""

    transport: str = "internal"  # "rest", "graphql", "websocket", "worker", "console", "internal"
    method: str = ""
    path: str = ""
    query: str = ""
    client_ip: str | None = None
    user_agent: str = ""


@dataclass(frozen=True)
class AccessContext:
    role: str
    identity: str | None = None  # "Patient/123", or None for service accounts, operators and the public
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    # SMART scopes the credential carries: a ceiling on what the rules grant. None = no ceiling.
    scopes: ScopeSet | None = None
    # How the caller authenticated, for logs and the audit log: "api-token", "oauth", "jwt", "none".
    method: str = "none"
    credential: str = ""  # token id or hint, OAuth token id; never the secret
    user: str = ""  # Django username (OAuth authorization code)
    client_id: str = ""  # OAuth client
    issuer: str = ""  # external issuer or "local"
    subject: str = ""
    on_behalf_of: str = ""  # an agent acting for this identity
    origin: Origin = field(default_factory=Origin, compare=False)
    # Facts worked out once per request (the identity's resource, its organisations...): see memo().
    cache: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def system(cls, reason: str) -> AccessContext:
        """The platform acting on its own behalf (commands, workers); `reason` says why."""
        return cls(role=SYSTEM, identity=None, request_id=f"system:{reason}", method="system")

    @classmethod
    def public(cls, request_id: str | None = None, origin: Origin | None = None) -> AccessContext:
        return cls(role=PUBLIC, request_id=request_id or uuid.uuid4().hex, origin=origin or Origin())

    def memo(self, key: object, compute):
        """`compute()` once per request and key."""
        if key not in self.cache:
            self.cache[key] = compute()
        return self.cache[key]

    @property
    def identity_id(self) -> str | None:
        return self.identity.split("/", 1)[1] if self.identity else None

    @property
    def identity_type(self) -> str | None:
        return self.identity.split("/", 1)[0] if self.identity else None
