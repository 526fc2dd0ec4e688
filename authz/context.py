"""AccessContext: who is calling, carried from the HTTP layer into every service function.

Authentication and the rule chain arrive with their own issues; until then the context only names
the caller for logs and carries the request id.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field


@dataclass(frozen=True)
class AccessContext:
    role: str
    identity: str | None = None  # "Patient/123" or None for service accounts and operators
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @classmethod
    def system(cls, reason: str) -> AccessContext:
        """The platform acting on its own behalf (commands, workers); `reason` says why."""
        return cls(role="System", identity=None, request_id=f"system:{reason}")
