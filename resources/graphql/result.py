"""What one GraphQL request produced, as the view renders it and the audit row records it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Executed:
    """The `data` and `errors` of the answer, and the status the audit row records for it."""

    data: dict | None
    errors: list[dict] = field(default_factory=list)
    status: int = 200
    operation: str = "graphql-read"  # graphql-search when the query selects a list


def refused(message: str, status: int = 400) -> Executed:
    return Executed(None, [{"message": message, "extensions": {"status": status}}], status)
